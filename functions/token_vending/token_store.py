"""The shared cache of tokens: DynamoDB items sealed with KMS, and the single-flight lease of each key.

Item layout (one table, key `pk`; upstream_guard.py keeps its own items beside these):

- token#{app}#{credential_id}#{digest of holder and scope}: sealed_token (KMS ciphertext),
  fingerprint, app, scope, credential_id, holder, secret_version, token_type, expires_at,
  renewal_blocked, stored_at (when it was minted), ttl. The seal's encryption context binds every
  field that decides serving (`sealing_context`), and the key it is stored under: an item edited,
  moved or planted does not unseal, and is treated as a miss (EntryRejected), never served.
- the same key, kind `paid`: paid_by, ttl. A report dropped the token and its reporter paid for the
  mint that replaces it (`PaidReplacement`): the next fetch of the key spends no caller's budget, and
  its stored token overwrites the item.
- lease#...: owner, lease_until, ttl (a lease held by a dead container simply runs out)

One parser reads a key's item (`parse_token_item`). Every failure of DynamoDB or KMS surfaces as
StoreUnavailable (an outage: the caller decides what to do without it) or ServiceMisconfigured.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws_errors import error_code, store_errors, translated
from .errors import Dependency
from .observability import tracer
from .shared_table import CONDITION_FAILED, TTL_GRACE_SECONDS, Table
from .tokens import CachedToken, TokenKey, fingerprint, servable

SHARED_HOLDER = "shared"  # what the seal says for a token without holder (no ARN reads so)
# AWS KMS takes an encryption context of at most 8,192 characters, keys and values together. A value
# longer than this (a scope set of 32 scopes of 256 characters, say) is bound by its digest instead.
KMS_CONTEXT_LIMIT = 8192
LONGEST_BOUND_VALUE = 512
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
class PaidReplacement:
    """A reported token's place in the table: its reporter paid for the mint that replaces it."""

    paid_by: str  # the reporting holder whose budget was spent


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


def parse_item(item: Mapping[str, Any]) -> StoredToken | PaidReplacement | None:
    """What a key's item holds: its token, the paid place of a reported one, or nothing to serve (an item
    without a sealed token); EntryRejected when malformed."""
    if item.get("kind", {}).get("S") == "paid":
        return PaidReplacement(item.get("paid_by", {}).get("S", ""))
    return parse_token_item(item) if "sealed_token" in item else None


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
    return {"app": key.app, "scope": _bound(key.scope), "credential_id": key.credential_id,
            "holder": _bound(key.holder or SHARED_HOLDER), "expires_at": str(int(token.expires_at)),
            "renewal_blocked": "true" if token.renewal_blocked else "false", "token_type": token.token_type,
            "stored_at": _stored_at(token.minted_at)}  # when it was minted: what decides when it may be reported


class TokenStore(Table):
    """Cached tokens, sealed with KMS, and the single-flight lease of each key."""

    def __init__(self, dynamodb: Callable[[], Any], kms: Callable[[], Any], table_name: str, kms_key_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(dynamodb, table_name, clock)
        self._kms = kms
        self._key_id = kms_key_id

    def get(self, key: TokenKey) -> StoredToken | PaidReplacement | None:
        """The key's entry as stored (token still sealed), or the paid place of a reported token;
        EntryRejected when malformed."""
        item = self._get_item(key.table_key)
        return parse_item(item) if item else None

    def held(self, key: TokenKey) -> StoredToken | PaidReplacement | None:
        """What the key's entry holds; None when there is none or it is malformed (it holds no token)."""
        try:
            return self.get(key)
        except EntryRejected:
            return None

    @tracer.capture_method(capture_response=False)
    def unseal(self, key: TokenKey, stored: StoredToken) -> CachedToken:
        """The entry's token; EntryRejected when its seal or fingerprint does not match the key and metadata."""
        try:
            plaintext = self._kms().decrypt(CiphertextBlob=stored.sealed, KeyId=self._key_id,
                                            EncryptionContext=sealing_context(key, stored))["Plaintext"]
        except ClientError as error:
            if error_code(error) in UNSEALABLE_CODES:
                raise EntryRejected(f"the entry does not unseal ({error_code(error)})") from None
            raise translated(error, Dependency.KMS) from None
        except BotoCoreError as error:
            raise translated(error, Dependency.KMS) from None
        access_token = plaintext.decode()
        if fingerprint(access_token) != stored.fingerprint:
            raise EntryRejected("the sealed token is not the one the entry names")
        return CachedToken(access_token=access_token, token_type=stored.token_type, scope=key.scope,
                           expires_at=stored.expires_at, renewal_blocked=stored.renewal_blocked,
                           minted_at=stored.minted_at)

    @tracer.capture_method(capture_response=False)
    def put(self, key: TokenKey, token: CachedToken, secret_version: str) -> None:
        context = sealing_context(key, token)
        with store_errors(Dependency.KMS):
            sealed = self._kms().encrypt(KeyId=self._key_id, Plaintext=token.access_token.encode(),
                                         EncryptionContext=context)["CiphertextBlob"]
        with store_errors():
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

    def replace_reported(self, key: TokenKey, reported: StoredToken, minted_before: float | None,
                         paid_by: str) -> bool:
        """Put a PaidReplacement in the place of the entry, only if it still holds the reported token (minted
        before then, when given); True when replaced. It lasts as long as the token would have."""
        marker = {"pk": {"S": key.table_key}, "kind": {"S": "paid"}, "paid_by": {"S": paid_by},
                  "ttl": {"N": str(reported.expires_at + TTL_GRACE_SECONDS)}}
        if minted_before is None:
            return self._put_if(marker, "fingerprint = :fp", {":fp": {"S": reported.fingerprint}})
        return self._put_if(marker, "fingerprint = :fp AND stored_at <= :cutoff",
                            {":fp": {"S": reported.fingerprint}, ":cutoff": {"N": _stored_at(minted_before)}})

    def try_acquire_lease(self, key: TokenKey, owner: str, seconds: float) -> float | None:
        """Take the key's single-flight lease if it is free or has run out.
        None when it is now ours; otherwise the epoch time the current holder's lease runs out."""
        now = self._clock()
        with store_errors():
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
                if error_code(error) == CONDITION_FAILED:
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
        with store_errors():
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


def _stored_at(epoch: float) -> str:
    """An epoch time as stored (and sealed): milliseconds, always written the same way."""
    return f"{epoch:.3f}"


def _bound(value: str) -> str:
    """A context value as bound: itself, or its digest when long (KMS_CONTEXT_LIMIT)."""
    if len(value) <= LONGEST_BOUND_VALUE:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
