"""The shared cache: tokens in DynamoDB, sealed with KMS, plus single-flight leases.

Every failure of DynamoDB or KMS surfaces as StoreUnavailable, so the vend can
go on without the shared cache. Item layout (one table, key `pk`):

- token#{app}#{credential_id}#{scope digest}: sealed_token (KMS ciphertext), fingerprint,
  app, scope, credential_id, secret_version, token_type, expires_at, renewal_blocked, ttl
- lease#...: owner, lease_until, ttl (a lease held by a dead container simply runs out)
- cooldown#{app}#{secret version}: until, reason: the token endpoint asked us to wait, or
  rejected the credentials; every container holds off until then
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
from .tokens import CachedToken, TokenKey, servable

ENTRY_FIELDS = ("kind", "app", "scope", "credential_id", "secret_version", "fingerprint", "expires_at",
                "renewal_blocked", "stored_at")
TTL_GRACE_SECONDS = 86_400  # DynamoDB TTL is late anyway; every read checks expiry itself


@dataclass(frozen=True)
class SealedToken:
    fingerprint: str
    token_type: str
    expires_at: float
    renewal_blocked: bool
    sealed: bytes = field(repr=False)

    def servable(self, now: float, min_ttl_seconds: float) -> bool:
        return servable(self.expires_at, self.renewal_blocked, now, min_ttl_seconds)


class TokenStore:
    def __init__(self, dynamodb: Callable[[], Any], kms: Callable[[], Any], table_name: str, kms_key_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb
        self._kms = kms
        self._table = table_name
        self._key_id = kms_key_id
        self._clock = clock

    @staticmethod
    def _context(key: TokenKey) -> dict[str, str]:
        return {"app": key.app, "scope": key.scope}

    def get(self, key: TokenKey) -> SealedToken | None:
        """The entry for the key as stored: metadata to decide on, the token still sealed."""
        with _store_errors():
            item = self._dynamodb().get_item(TableName=self._table, Key={"pk": {"S": key.table_key}},
                                             ConsistentRead=True).get("Item")
        if not item or "sealed_token" not in item:
            return None
        return SealedToken(
            fingerprint=item["fingerprint"]["S"],
            token_type=item.get("token_type", {}).get("S", "bearer"),
            expires_at=float(item["expires_at"]["N"]),
            renewal_blocked=item.get("renewal_blocked", {}).get("BOOL", False),
            sealed=item["sealed_token"]["B"],
        )

    @tracer.capture_method(capture_response=False)
    def unseal(self, key: TokenKey, stored: SealedToken) -> CachedToken:
        with _store_errors("kms"):
            plaintext = self._kms().decrypt(CiphertextBlob=stored.sealed, KeyId=self._key_id,
                                            EncryptionContext=self._context(key))["Plaintext"]
        return CachedToken(access_token=plaintext.decode(), token_type=stored.token_type, scope=key.scope,
                           expires_at=stored.expires_at, renewal_blocked=stored.renewal_blocked)

    def fingerprint_of(self, key: TokenKey) -> str | None:
        """Which token the table holds for the key, without unsealing it."""
        with _store_errors():
            item = self._dynamodb().get_item(TableName=self._table, Key={"pk": {"S": key.table_key}},
                                             ConsistentRead=True, ProjectionExpression="fingerprint").get("Item")
        return item["fingerprint"]["S"] if item and "fingerprint" in item else None

    @tracer.capture_method(capture_response=False)
    def put(self, key: TokenKey, token: CachedToken, secret_version: str) -> None:
        with _store_errors("kms"):
            sealed = self._kms().encrypt(KeyId=self._key_id, Plaintext=token.access_token.encode(),
                                         EncryptionContext=self._context(key))["CiphertextBlob"]
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
                "expires_at": {"N": str(int(token.expires_at))},
                "renewal_blocked": {"BOOL": token.renewal_blocked},
                "stored_at": {"N": str(int(self._clock()))},
                "ttl": {"N": str(int(token.expires_at) + TTL_GRACE_SECONDS)},
            })

    def delete_if_fingerprint(self, key: TokenKey, fingerprint: str) -> bool:
        """Drop the entry only if it still holds that token; True when something was dropped."""
        with _store_errors():
            try:
                self._dynamodb().delete_item(
                    TableName=self._table, Key={"pk": {"S": key.table_key}},
                    ConditionExpression="fingerprint = :fp",
                    ExpressionAttributeValues={":fp": {"S": fingerprint}},
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

    def remember_cooldown(self, app: str, secret_version: str, until: float, reason: str) -> None:
        """Tell every container that the token endpoint is not to be called for this app until then."""
        with _store_errors():
            self._dynamodb().put_item(TableName=self._table, Item={
                "pk": {"S": f"cooldown#{app}#{secret_version}"}, "kind": {"S": "cooldown"},
                "until": {"N": f"{until:.3f}"}, "reason": {"S": reason},
                "ttl": {"N": str(int(until) + TTL_GRACE_SECONDS)}})

    def cooldown(self, app: str, secret_version: str) -> tuple[float, str] | None:
        """(until, reason) of a remembered failure for the app, if one is still running."""
        with _store_errors():
            item = self._dynamodb().get_item(TableName=self._table,
                                             Key={"pk": {"S": f"cooldown#{app}#{secret_version}"}},
                                             ConsistentRead=True).get("Item")
        if not item or float(item["until"]["N"]) <= self._clock():
            return None
        return float(item["until"]["N"]), item["reason"]["S"]

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
