"""One cold Lambda container in its own process: import the handler, answer one event, report.

    python -m devstack.cold_container EVENT_JSON START_AT RESULT_FILE

The import happens first; the event is answered at START_AT (epoch seconds), so
many of these processes can miss the same key at the same moment.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from devstack.lambda_context import LocalLambdaContext


def main(event_json: str, start_at: str, result_file: str) -> None:
    from token_vending.app import lambda_handler

    event: dict[str, Any] = json.loads(event_json)
    time.sleep(max(0.0, float(start_at) - time.time()))
    started = time.monotonic()
    result = lambda_handler(event, LocalLambdaContext())
    elapsed = time.monotonic() - started
    with open(result_file, "w") as handle:
        json.dump({"status": result["statusCode"], "body": result.get("body"), "headers": result.get("headers"),
                   "seconds": elapsed}, handle)


if __name__ == "__main__":
    main(*sys.argv[1:4])
