"""The context object the Lambda runtime passes to a handler, for invoking it locally.

Imports nothing heavy: the benchmarks' cold-start clock runs while it is imported."""

from __future__ import annotations

import time
import uuid

from .local_aws import ACCOUNT, REGION


class LocalLambdaContext:
    function_name = "TokenVendingFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:TokenVendingFunction"

    def __init__(self, timeout_seconds: float = 28) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds  # template.yaml's Timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
