"""The shared cache: tokens in DynamoDB, sealed with KMS, plus single-flight leases,
remembered failures and the per-app mint counters.

Every failure of DynamoDB or KMS surfaces as StoreUnavailable, so the vend can
go on without the shared cache. Item layout (one table, key `pk`):

- token#{app}#{credential_id}#{scope digest}: sealed_token (KMS ciphertext), fingerprint,
  app, scope, credential_id, secret_version, token_type, expires_at, renewal_blocked,
  stored_at (when it was minted), ttl. The seal's encryption context binds every field
  that decides serving (see `sealing_context`): an item whose metadata was edited does
  not unseal, and is treated as a miss (EntryRejected), never served.
- lease#...: owner, lease_until, ttl (a lease held by a dead container simply runs out)
- cooldown#{app}#{secret version}: until, reason, streak: the token endpoint asked us to
  wait, failed, or rejected the credentials; every container holds off until then
- mints#{app}#{hour}: count, ttl: upstream token requests for the app in that clock hour
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import StoreUnavailable
from .observability import tracer
from .tokens import CachedToken, TokenKey, fingerprint, servable

ENTRY_FIELDS = ("kind", "app", "scope", "credential_id", "secret_version", "fingerprint", "expires_at",
                "renewal_blocked", "stored_at")
TTL_GRACE_SECONDS = 86_400  # DynamoDB TTL is late anyway; every read checks expiry itself
HOUR = 3600


class EntryRejected(Exception):
    """A table entry that must not be served: its seal does not match its metadata (edited, or
    written before the seal bound it), or the unsealed token is not the one the entry names."""


@dataclass(frozen=True)
class SealedToken:
    fingerprint: str
    token_type: str
    expires_at: int
    renewal_blocked: bool
    stored_at: float
    sealed: bytes = field(repr=False)

    def servable(self, now: float, min_ttl_seconds: float) -> bool:
        return servable(self.expires_at, self.renewal_blocked, now, min_ttl_seconds)


@dataclass(frozen=True)
class HeldToken:
    """Which token the table holds for a key, without unsealing it."""

    fingerprint: str
    minted_at: float


@dataclass(frozen=True)
class Cooldown:
    until: float  # epoch seconds
    reason: str
    streak: int  # consecutive transient failures (0 for the other kinds)


def sealing_context(key: TokenKey, expires_at: int, renewal_blocked: bool, token_type: str) -> dict[str, str]:
    """The KMS encryption context of a sealed token: everything that decides whether and how it is
    served. The key policy requires these keys and no others."""
    return {"app": key.app, "scope": key.scope, "credential_id": key.credential_id, "expires_at": str(expires_at),
            "renewal_blocked": "true" if renewal_blocked else "false", "token_type": token_type}


class TokenStore:
    def __init__(self, dynamodb: Callable[[], Any], kms: Callable[[], Any], table_name: str, kms_key_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb
        self._kms = kms
        self._table = table_name
        self._key_id = kms_key_id
        self._clock = clock

    def get(self, key: TokenKey) -> SealedToken | None:
        """The entry for the key as stored: metadata to decide on, the token still sealed."""
        with _store_errors():
            item = self._dynamodb().get_item(TableName=self._table, Key={"pk": {"S": key.table_key}},
                                             ConsistentRead=True).get("Item")
        if not item or "sealed_token" not in item:
            return None
        try:
            return SealedToken(
                fingerprint=item["fingerprint"]["S"],
                token_type=item.get("token_type", {}).get("S", "bearer"),
                expires_at=int(float(item["expires_at"]["N"])),
                renewal_blocked=item.get("renewal_blocked", {}).get("BOOL", False),
                stored_at=float(item.get("stored_at", {}).get("N", "0")),
                sealed=item["sealed_token"]["B"],
            )
        except (KeyError, ValueError, TypeError):
            raise EntryRejected("the entry is malformed") from None

    @tracer.capture_method(capture_response=False)
    def unseal(self, key: TokenKey, stored: SealedToken) -> CachedToken:
        """The entry's token; EntryRejected when its seal or fingerprint does not match its metadata."""
        context = sealing_context(key, stored.expires_at, stored.renewal_blocked, stored.token_type)
        try:
            with _store_errors("kms"):
                plaintext = self._kms().decrypt(CiphertextBlob=stored.sealed, KeyId=self._key_id,
                                                EncryptionContext=context)["Plaintext"]
        except StoreUnavailable as error:
            if str(error) == "InvalidCiphertextException":  # another context (or blob) than it was sealed with
                raise EntryRejected("the seal does not match the entry") from None
            raise
        access_token = plaintext.decode()
        if fingerprint(access_token) != stored.fingerprint:
            raise EntryRejected("the sealed token is not the one the entry names")
        return CachedToken(access_token=access_token, token_type=stored.token_type, scope=key.scope,
                           expires_at=stored.expires_at, renewal_blocked=stored.renewal_blocked,
                           minted_at=stored.stored_at)

    def held_token(self, key: TokenKey) -> HeldToken | None:
        """Which token the table holds for the key (and when it was minted), without unsealing it."""
        with _store_errors():
            item = self._dynamodb().get_item(TableName=self._table, Key={"pk": {"S": key.table_key}},
                                             ConsistentRead=True, ProjectionExpression="fingerprint, stored_at",
                                             ).get("Item")
        if not item or "fingerprint" not in item:
            return None
        return HeldToken(item["fingerprint"]["S"], float(item.get("stored_at", {}).get("N", "0")))

    @tracer.capture_method(capture_response=False)
    def put(self, key: TokenKey, token: CachedToken, secret_version: str) -> None:
        expires_at = int(token.expires_at)
        context = sealing_context(key, expires_at, token.renewal_blocked, token.token_type)
        with _store_errors("kms"):
            sealed = self._kms().encrypt(KeyId=self._key_id, Plaintext=token.access_token.encode(),
                                         EncryptionContext=context)["CiphertextBlob"]
        with _store_errors():
            self._dynamodb().put_item(TableName=self._table, Item={
                "pk": {"S": key.table_key},
                "kind": {"S": "token"},
                "app": {"S": key.app},
                "scope": {"S": key.scope},
                "credential_id": {"S": key.credential_id},
                "secret_version": {"S": secret_version},
                "sealed_token": {"B": sealed},
                "fingerprint": {"S": token.fingerprint},
                "token_type": {"S": token.token_type},
                "expires_at": {"N": str(expires_at)},
                "renewal_blocked": {"BOOL": token.renewal_blocked},
                "stored_at": {"N": f"{token.minted_at or self._clock():.3f}"},
                "ttl": {"N": str(expires_at + TTL_GRACE_SECONDS)},
            })

    def delete_if_fingerprint(self, key: TokenKey, token_fingerprint: str, minted_before: float) -> bool:
        """Drop the entry only if it still holds that token, minted before then; True when dropped."""
        with _store_errors():
            try:
                self._dynamodb().delete_item(
                    TableName=self._table, Key={"pk": {"S": key.table_key}},
                    ConditionExpression="fingerprint = :fp AND "
                                        "(attribute_not_exists(stored_at) OR stored_at <= :cutoff)",
                    ExpressionAttributeValues={":fp": {"S": token_fingerprint},
                                               ":cutoff": {"N": f"{minted_before:.3f}"}},
                )
            except ClientError as error:
                if _code(error) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

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
        with _store_errors():
            try:
                self._dynamodb().delete_item(
                    TableName=self._table, Key={"pk": {"S": key.lease_key}},
                    ConditionExpression="#owner = :me",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={":me": {"S": owner}},
                )
            except ClientError as error:
                if _code(error) != "ConditionalCheckFailedException":  # someone took over after it ran out
                    raise

    def remember_cooldown(self, app: str, secret_version: str, cooldown: Cooldown) -> None:
        """Tell every container that the token endpoint is not to be called for this app until then."""
        with _store_errors():
            self._dynamodb().put_item(TableName=self._table, Item={
                "pk": {"S": _cooldown_key(app, secret_version)}, "kind": {"S": "cooldown"},
                "until": {"N": f"{cooldown.until:.3f}"}, "reason": {"S": cooldown.reason},
                "streak": {"N": str(cooldown.streak)},
                "ttl": {"N": str(int(cooldown.until) + TTL_GRACE_SECONDS)}})

    def cooldown(self, app: str, secret_version: str) -> Cooldown | None:
        """The app's remembered failure, if one is recorded (it may have run out: its streak still counts)."""
        with _store_errors():
            item = self._dynamodb().get_item(TableName=self._table,
                                             Key={"pk": {"S": _cooldown_key(app, secret_version)}},
                                             ConsistentRead=True).get("Item")
        if not item:
            return None
        return Cooldown(float(item["until"]["N"]), item["reason"]["S"], int(item.get("streak", {}).get("N", "0")))

    def forget_cooldown(self, app: str, secret_version: str) -> None:
        with _store_errors():
            self._dynamodb().delete_item(TableName=self._table, Key={"pk": {"S": _cooldown_key(app, secret_version)}})

    def count_mint(self, app: str, limit: int) -> int | None:
        """Count one upstream token request for the app in this clock hour, atomically across every
        container: the new count, or None (nothing counted) when `limit` requests were made already."""
        hour = int(self._clock() // HOUR)
        with _store_errors():
            try:
                answer = self._dynamodb().update_item(
                    TableName=self._table, Key={"pk": {"S": f"mints#{app}#{hour}"}},
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

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every cached token's metadata (never the sealed token), for the scheduled refresh and operators."""
        with _store_errors():
            paginator = self._dynamodb().get_paginator("scan")
            for page in paginator.paginate(
                TableName=self._table,
                FilterExpression="#kind = :token",
                ExpressionAttributeValues={":token": {"S": "token"}},
                ProjectionExpression=", ".join(f"#{name}" for name in ENTRY_FIELDS),
                ExpressionAttributeNames={f"#{name}": name for name in ENTRY_FIELDS},
            ):
                for item in page.get("Items", []):
                    yield {name: next(iter(value.values())) for name, value in item.items()}


def _cooldown_key(app: str, secret_version: str) -> str:
    return f"cooldown#{app}#{secret_version}"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def _store_errors(dependency: str = "dynamodb") -> Iterator[None]:
    """Turn any DynamoDB/KMS failure into StoreUnavailable, keeping only the error's name."""
    try:
        yield
    except ClientError as error:
        raise StoreUnavailable(_code(error), dependency) from None
    except BotoCoreError as error:
        raise StoreUnavailable(type(error).__name__, dependency) from None
