"""The DynamoDB table the function keeps its shared state in: the base of TokenStore (token_store.py)
and GuardTable (upstream_guard.py). One table, key `pk`; each item says its `kind`. Every failure
surfaces as StoreUnavailable (an outage) or ServiceMisconfigured (aws_errors.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from .aws_errors import error_code, store_errors

TTL_GRACE_SECONDS = 86_400  # DynamoDB TTL is late anyway; every read checks expiry itself
HOUR = 3600
CONDITION_FAILED = "ConditionalCheckFailedException"


class Table:
    def __init__(self, dynamodb: Callable[[], Any], table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._clock = clock

    def _get_item(self, pk: str) -> dict[str, Any] | None:
        with store_errors():
            item: dict[str, Any] | None = self._dynamodb().get_item(
                TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
        return item

    def _write_if(self, operation: str, **request: Any) -> dict[str, Any] | None:
        """A conditional write (`put_item`, `update_item`, `delete_item`): DynamoDB's answer, or None when the
        condition does not hold."""
        with store_errors():
            try:
                answer: dict[str, Any] = getattr(self._dynamodb(), operation)(TableName=self._table, **request)
            except ClientError as error:
                if error_code(error) == CONDITION_FAILED:
                    return None
                raise
        return answer

    def _put_if(self, item: dict[str, Any], condition: str, values: dict[str, Any]) -> bool:
        """Write the item if the condition holds; False when it does not."""
        return self._write_if("put_item", Item=item, ConditionExpression=condition,
                              ExpressionAttributeValues=values) is not None

    def _delete_if(self, pk: str, condition: str, values: dict[str, Any], names: dict[str, str] | None = None) -> bool:
        """Delete the item if the condition holds; False when it does not."""
        options: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        return self._write_if("delete_item", Key={"pk": {"S": pk}}, ConditionExpression=condition,
                              ExpressionAttributeValues=values, **options) is not None
