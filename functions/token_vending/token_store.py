"""The shared cache: tokens in DynamoDB, sealed with KMS, plus single-flight leases,
remembered failures and the hourly mint counters.

`TokenStore` reads and writes tokens and leases, `GuardTable` what upstream_guard.py shares.
Every failure of DynamoDB or KMS surfaces as StoreUnavailable; `StoreHealth` is where a
request records it (once per service) and goes on without that service. Item layout (one
table, key `pk`):

- token#{app}#{credential_id}#{digest of holder and scope}: sealed_token (KMS ciphertext),
  fingerprint, app, scope, credential_id, holder, secret_version, token_type, expires_at,
  renewal_blocked, stored_at (when it was minted), ttl. One parser reads them
  (`parse_token_item`). The seal's encryption context binds every field that decides serving
  (`sealing_context`), and the key it is stored under: an item edited, moved or planted does
  not unseal, and is treated as a miss (EntryRejected), never served.
- lease#...: owner, lease_until, ttl (a lease held by a dead container simply runs out)
- cooldown#{app}#{secret version}: cooldown (its kind), until, streak: a failure of the token
  endpoint that every container holds off for (upstream_guard.py decides)
- mints#{app}#{hour} and mints#{app}#caller#{holder digest}#{hour}: count, ttl: upstream token
  requests for the app, and those one holder's vends caused, in that clock hour
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import Dependency, StoreUnavailable
from .observability import record_store_degraded, tracer
from .tokens import CachedToken, TokenKey, fingerprint, servable
from .upstream_guard import MAX_COOLDOWN_SECONDS, Cooldown, CooldownKind

SHARED_HOLDER = "shared"  # what the seal says for a token without holder (no ARN reads so)
TTL_GRACE_SECONDS = 86_400  # DynamoDB TTL is late anyway; every read checks expiry itself
HOUR = 3600
# Metadata a listing reads (never the sealed token): what the scheduled refresh and `make tokens` show.
LISTED_FIELDS = ("kind", "app", "scope", "credential_id", "holder", "secret_version", "fingerprint", "token_type",
                 "expires_at", "renewal_blocked", "stored_at")
# Decrypt errors that are the item's fault (another context, blob or key than ours sealed it with, or a
# context our key policy refuses): a miss to overwrite. Any other KMS error (throttling, a disabled or
# unreachable key) means KMS itself is unavailable: then only storing is skipped.
UNSEALABLE_CODES = frozenset({"InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException"})


class EntryRejected(Exception):
    """A table entry that must not be served: malformed, its seal does not match its metadata (edited,
    moved, or written before the seal bound it), or the unsealed token is not the one the entry names."""


@dataclass(frozen=True)
class StoredToken:
    """A token item as stored: what decides serving it, with the token still sealed."""

    app: str
    scope: str
    credential_id: str
    holder: str  # "" for a token the app's callers share
    secret_version: str
    fingerprint: str
    token_type: str
    expires_at: int
    renewal_blocked: bool
    minted_at: float  # the item's stored_at
    sealed: bytes = field(repr=False)  # empty when listed

    def servable(self, now: float, min_ttl_seconds: float) -> bool:
        return servable(self.expires_at, self.renewal_blocked, now, min_ttl_seconds)

    @property
    def key(self) -> TokenKey:
        """The key the item says it belongs to (a moved item's claim is checked by its seal)."""
        return TokenKey(self.app, self.scope, self.credential_id, self.holder)


def parse_token_item(item: Mapping[str, Any]) -> StoredToken:
    """The one reader of token items (vend, report, refresh, `make tokens`); EntryRejected when malformed."""
    try:
        return StoredToken(
            app=item["app"]["S"], scope=item["scope"]["S"], credential_id=item["credential_id"]["S"],
            holder=item.get("holder", {}).get("S", ""), secret_version=item.get("secret_version", {}).get("S", ""),
            fingerprint=item["fingerprint"]["S"],
            token_type=item.get("token_type", {}).get("S", "bearer"),
            expires_at=int(float(item["expires_at"]["N"])),
            renewal_blocked=item.get("renewal_blocked", {}).get("BOOL", False) is True,
            minted_at=float(item["stored_at"]["N"]),
            sealed=item.get("sealed_token", {}).get("B", b""),
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        raise EntryRejected("the entry is malformed") from None


def sealing_context(key: TokenKey, token: CachedToken | StoredToken) -> dict[str, str]:
    """The KMS encryption context of a sealed token: everything that decides whether, how and to whom
    it is served. The key policy requires these keys and no others."""
    return {"app": key.app, "scope": key.scope, "credential_id": key.credential_id,
            "holder": key.holder or SHARED_HOLDER, "expires_at": str(int(token.expires_at)),
            "renewal_blocked": "true" if token.renewal_blocked else "false", "token_type": token.token_type,
            "stored_at": _stored_at(token.minted_at)}  # when it was minted: what decides when it may be reported


@dataclass
class StoreHealth:
    """How the shared cache has answered during one request: each failed service is recorded (a
    Degraded_<service> metric and a log line) the first time only, then worked around."""

    failed: set[Dependency] = field(default_factory=set)

    @property
    def table_answers(self) -> bool:
        return Dependency.DYNAMODB not in self.failed

    @property
    def kms_answers(self) -> bool:
        return Dependency.KMS not in self.failed

    @contextmanager
    def tolerate(self) -> Iterator[None]:
        """Run shared-cache work; if a service fails, note it and carry on after the block."""
        try:
            yield
        except StoreUnavailable as error:
            if error.dependency not in self.failed:
                self.failed.add(error.dependency)
                record_store_degraded(error.dependency, str(error))


class _Table:
    """The DynamoDB table the function keeps its shared state in."""

    def __init__(self, dynamodb: Callable[[], Any], table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._clock = clock

    def _get_item(self, pk: str) -> dict[str, Any] | None:
        with _store_errors():
            item: dict[str, Any] | None = self._dynamodb().get_item(
                TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
        return item

    def _delete_if(self, pk: str, condition: str, values: dict[str, Any], names: dict[str, str] | None = None) -> bool:
        """Delete the item if the condition holds; False when it does not."""
        options: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        with _store_errors():
            try:
                self._dynamodb().delete_item(TableName=self._table, Key={"pk": {"S": pk}},
                                             ConditionExpression=condition, ExpressionAttributeValues=values, **options)
            except ClientError as error:
                if _code(error) == "ConditionalCheckFailedException":
                    return False
                raise
        return True


class TokenStore(_Table):
    """Cached tokens, sealed with KMS, and the single-flight lease of each key."""

    def __init__(self, dynamodb: Callable[[], Any], kms: Callable[[], Any], table_name: str, kms_key_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(dynamodb, table_name, clock)
        self._kms = kms
        self._key_id = kms_key_id

    def get(self, key: TokenKey) -> StoredToken | None:
        """The entry for the key as stored, token still sealed; EntryRejected when malformed."""
        item = self._get_item(key.table_key)
        return parse_token_item(item) if item and "sealed_token" in item else None

    @tracer.capture_method(capture_response=False)
    def unseal(self, key: TokenKey, stored: StoredToken) -> CachedToken:
        """The entry's token; EntryRejected when its seal or fingerprint does not match the key and metadata."""
        try:
            plaintext = self._kms().decrypt(CiphertextBlob=stored.sealed, KeyId=self._key_id,
                                            EncryptionContext=sealing_context(key, stored))["Plaintext"]
        except ClientError as error:
            if _code(error) in UNSEALABLE_CODES:
                raise EntryRejected(f"the entry does not unseal ({_code(error)})") from None
            raise StoreUnavailable(_code(error), Dependency.KMS) from None
        except BotoCoreError as error:
            raise StoreUnavailable(type(error).__name__, Dependency.KMS) from None
        access_token = plaintext.decode()
        if fingerprint(access_token) != stored.fingerprint:
            raise EntryRejected("the sealed token is not the one the entry names")
        return CachedToken(access_token=access_token, token_type=stored.token_type, scope=key.scope,
                           expires_at=stored.expires_at, renewal_blocked=stored.renewal_blocked,
                           minted_at=stored.minted_at)

    @tracer.capture_method(capture_response=False)
    def put(self, key: TokenKey, token: CachedToken, secret_version: str) -> None:
        context = sealing_context(key, token)
        with _store_errors(Dependency.KMS):
            sealed = self._kms().encrypt(KeyId=self._key_id, Plaintext=token.access_token.encode(),
                                         EncryptionContext=context)["CiphertextBlob"]
        with _store_errors():
            self._dynamodb().put_item(TableName=self._table, Item={
                "pk": {"S": key.table_key},
                "kind": {"S": "token"},
                "app": {"S": key.app},
                "scope": {"S": key.scope},
                "credential_id": {"S": key.credential_id},
                "holder": {"S": key.holder},
                "secret_version": {"S": secret_version},
                "sealed_token": {"B": sealed},
                "fingerprint": {"S": token.fingerprint},
                "token_type": {"S": token.token_type},
                "expires_at": {"N": context["expires_at"]},
                "renewal_blocked": {"BOOL": token.renewal_blocked},
                "stored_at": {"N": context["stored_at"]},
                "ttl": {"N": str(int(token.expires_at) + TTL_GRACE_SECONDS)},
            })

    def delete_if_fingerprint(self, key: TokenKey, token_fingerprint: str, minted_before: float | None) -> bool:
        """Drop the entry only if it still holds that token (minted before then, when given); True when dropped."""
        if minted_before is None:
            return self._delete_if(key.table_key, "fingerprint = :fp", {":fp": {"S": token_fingerprint}})
        return self._delete_if(key.table_key, "fingerprint = :fp AND stored_at <= :cutoff",
                               {":fp": {"S": token_fingerprint}, ":cutoff": {"N": _stored_at(minted_before)}})

    def try_acquire_lease(self, key: TokenKey, owner: str, seconds: float) -> float | None:
        """Take the key's single-flight lease if it is free or has run out.
        None when it is now ours; otherwise the epoch time the current holder's lease runs out."""
        now = self._clock()
        with _store_errors():
            try:
                self._dynamodb().put_item(
                    TableName=self._table,
                    Item={"pk": {"S": key.lease_key}, "kind": {"S": "lease"}, "owner": {"S": owner},
                          "lease_until": {"N": f"{now + seconds:.3f}"},
                          "ttl": {"N": str(int(now + seconds) + TTL_GRACE_SECONDS)}},
                    ConditionExpression="attribute_not_exists(pk) OR lease_until < :now",
                    ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",  # tells waiters when to try again
                )
            except ClientError as error:
                if _code(error) == "ConditionalCheckFailedException":
                    holder: dict[str, Any] = error.response.get("Item", {})  # type: ignore[assignment]
                    held = holder.get("lease_until", {}).get("N")
                    return float(held) if held else now + seconds
                raise
        return None

    def release_lease(self, key: TokenKey, owner: str) -> None:
        # False: someone took it over after it ran out, and it is theirs now.
        self._delete_if(key.lease_key, "#owner = :me", {":me": {"S": owner}}, names={"#owner": "owner"})

    def entries(self) -> Iterator[StoredToken]:
        """Every cached token as stored, without its sealed token (for the scheduled refresh and operators);
        items that do not parse are left out."""
        with _store_errors():
            paginator = self._dynamodb().get_paginator("scan")
            for page in paginator.paginate(
                TableName=self._table,
                FilterExpression="#kind = :token",
                ExpressionAttributeValues={":token": {"S": "token"}},
                ProjectionExpression=", ".join(f"#{name}" for name in LISTED_FIELDS),
                ExpressionAttributeNames={f"#{name}": name for name in LISTED_FIELDS},
            ):
                for item in page.get("Items", []):
                    try:
                        yield parse_token_item(item)
                    except EntryRejected:
                        continue


class GuardTable(_Table):
    """What upstream_guard.py shares between containers: remembered failures and the hourly mint counters."""

    def remember_cooldown(self, app: str, secret_version: str, cooldown: Cooldown) -> None:
        """Tell every container that the token endpoint is not to be called for this app until then."""
        with _store_errors():
            self._dynamodb().put_item(TableName=self._table, Item={
                "pk": {"S": _cooldown_key(app, secret_version)}, "kind": {"S": "cooldown"},
                "cooldown": {"S": cooldown.kind.value}, "until": {"N": f"{cooldown.until:.3f}"},
                "streak": {"N": str(cooldown.streak)},
                "ttl": {"N": str(int(cooldown.until) + TTL_GRACE_SECONDS)}})

    def cooldown(self, app: str, secret_version: str) -> Cooldown | None:
        """The app's remembered failure, if one is recorded (it may have run out: its streak still counts).
        Whoever wrote it, it holds off no longer than any remembered failure may."""
        item = self._get_item(_cooldown_key(app, secret_version))
        if not item:
            return None
        try:
            kind = CooldownKind(item.get("cooldown", {}).get("S", CooldownKind.THROTTLED.value))
            until = min(float(item["until"]["N"]), self._clock() + MAX_COOLDOWN_SECONDS)
            return Cooldown(kind, until, streak=int(item.get("streak", {}).get("N", "0")))
        except (KeyError, ValueError, TypeError):
            return None  # not one we wrote: nothing to hold off for

    def forget_cooldown(self, app: str, secret_version: str) -> None:
        with _store_errors():
            self._dynamodb().delete_item(TableName=self._table, Key={"pk": {"S": _cooldown_key(app, secret_version)}})

    def count_mint(self, budget: str, limit: int) -> int | None:
        """Count one upstream token request against a budget (`app`) in this clock hour, atomically across
        every container: the new count, or None (nothing counted) when `limit` requests were made already."""
        hour = int(self._clock() // HOUR)
        with _store_errors():
            try:
                answer = self._dynamodb().update_item(
                    TableName=self._table, Key={"pk": {"S": f"mints#{budget}#{hour}"}},
                    UpdateExpression="ADD #count :one SET #kind = :kind, #ttl = :ttl",
                    ConditionExpression="attribute_not_exists(#count) OR #count < :limit",
                    ExpressionAttributeNames={"#count": "count", "#kind": "kind", "#ttl": "ttl"},
                    ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(limit)},
                                               ":kind": {"S": "mints"},
                                               ":ttl": {"N": str((hour + 1) * HOUR + TTL_GRACE_SECONDS)}},
                    ReturnValues="UPDATED_NEW",
                )
            except ClientError as error:
                if _code(error) == "ConditionalCheckFailedException":
                    return None
                raise
        return int(answer["Attributes"]["count"]["N"])


def _stored_at(epoch: float) -> str:
    """An epoch time as stored (and sealed): milliseconds, always written the same way."""
    return f"{epoch:.3f}"


def _cooldown_key(app: str, secret_version: str) -> str:
    return f"cooldown#{app}#{secret_version}"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def _store_errors(dependency: Dependency = Dependency.DYNAMODB) -> Iterator[None]:
    """Turn any DynamoDB/KMS failure into StoreUnavailable, keeping only the error's name."""
    try:
        yield
    except ClientError as error:
        raise StoreUnavailable(_code(error), dependency) from None
    except BotoCoreError as error:
        raise StoreUnavailable(type(error).__name__, dependency) from None
