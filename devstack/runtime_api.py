"""The Lambda Runtime API, on 127.0.0.1: what Lambda offers the runtime client inside one execution environment.

A runtime client (awslambdaric, as Lambda's Python runtime starts it) asks `GET .../invocation/next`
for an event, runs the handler, and posts `.../invocation/{id}/response` or `.../error`; an init
failure is posted to `/runtime/init/error`. This serves one environment (one process): it hands out
the events given to `invoke()` one at a time, with the headers Lambda sends (request id, deadline,
function ARN, trace id), and times them as Lambda's REPORT line does.

Written by hand (standard library only) for accurate Init timing. The AWS Runtime Interface Emulator
that SAM CLI ships (in .venv-sam, `samcli/local/rapid/aws-lambda-rie-*`) does serve a request without
Docker, but its REPORT timing is not usable for the benchmark, whose cold-start figures need Init
Duration and Duration measured as Lambda measures them.
"""

from __future__ import annotations

import json
import queue
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


class InitError(RuntimeError):
    """The function failed to start: Lambda's `Runtime.ImportModuleError`, `Runtime.HandlerNotFound`, ..."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('errorType')}: {error.get('errorMessage')}")
        self.error = error


@dataclass
class Invocation:
    """One event handed to the function, and what it answered."""

    request_id: str
    payload: bytes
    deadline_ms: int
    handed_out: float | None = None  # time.perf_counter() when `/next` gave it to the runtime client
    finished: float | None = None  # ... when its response or error arrived
    response: bytes | None = None
    error: dict[str, Any] | None = None  # the runtime client's error document (errorType, errorMessage, ...)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def duration_ms(self) -> float:
        """From the event handed out to the answer received: the REPORT line's Duration."""
        assert self.handed_out is not None and self.finished is not None
        return (self.finished - self.handed_out) * 1000

    def result(self) -> Any:
        """The handler's return value (JSON), or raises FunctionError with the error the runtime client posted."""
        if self.error is not None:
            raise FunctionError(self.error)
        assert self.response is not None
        return json.loads(self.response)


class FunctionError(RuntimeError):
    """The handler raised: what Lambda returns as a function error (`X-Amz-Function-Error: Unhandled`)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('errorType')}: {error.get('errorMessage')}")
        self.error = error


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the process ended: its connection with it
            super().handle_error(request, client_address)


class RuntimeApi:
    def __init__(self, function_arn: str, timeout_seconds: float) -> None:
        self.function_arn = function_arn
        self.timeout_seconds = timeout_seconds  # the function's Timeout: each event's deadline
        self.first_next_at: float | None = None  # perf_counter of the first `/next`: the end of init
        self.init_error: dict[str, Any] | None = None
        self.changed = threading.Condition()  # notified on every `/next`, answer and init error
        self._pending: queue.Queue[Invocation | None] = queue.Queue()
        self._invocations: dict[str, Invocation] = {}
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """host:port, as Lambda passes it in AWS_LAMBDA_RUNTIME_API."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> RuntimeApi:
        self._thread = threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._pending.put(None)  # releases a `/next` that is waiting
        self._server.shutdown()
        self._server.server_close()

    def submit(self, event: Any) -> Invocation:
        """Queue one event; the runtime client's next `/next` receives it."""
        invocation = Invocation(request_id=str(uuid.uuid4()), payload=json.dumps(event).encode(),
                                deadline_ms=0)
        self._invocations[invocation.request_id] = invocation
        self._pending.put(invocation)
        return invocation

    # The HTTP side, called from the server's threads.

    def _next(self) -> Invocation | None:
        with self.changed:
            if self.first_next_at is None:
                self.first_next_at = time.perf_counter()
            self.changed.notify_all()
        invocation = self._pending.get()
        if invocation is None:
            self._pending.put(None)  # stopping: release every other waiter too
            return None
        invocation.deadline_ms = int((time.time() + self.timeout_seconds) * 1000)
        return invocation

    def _finish(self, request_id: str, response: bytes | None, error: dict[str, Any] | None) -> bool:
        invocation = self._invocations.get(request_id)
        if invocation is None or invocation.done.is_set():
            return False
        invocation.finished = time.perf_counter()
        invocation.response, invocation.error = response, error
        with self.changed:
            invocation.done.set()
            self.changed.notify_all()
        return True

    def _fail_init(self, error: dict[str, Any]) -> None:
        with self.changed:
            self.init_error = error
            self.changed.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open
            disable_nagle_algorithm = True  # else headers and body wait on each other's ACK (40 ms per event)

            def log_message(self, format: str, *args: Any) -> None:  # one line per request drowns the logs
                pass

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._send(404, {"errorType": "NotFound", "errorMessage": self.path})
                    return
                invocation = api._next()
                if invocation is None:  # stopping; the process is gone or going
                    self.close_connection = True
                    return
                headers = {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                    "Lambda-Runtime-Trace-Id": _trace_header(),
                }
                invocation.handed_out = time.perf_counter()
                self._send(200, invocation.payload, headers)

            def do_POST(self) -> None:
                body = self._body()
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts == ["init", "error"]:
                    api._fail_init(_error_document(body, self.headers))
                    self._send(202, {"status": "OK"})
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    error = _error_document(body, self.headers) if parts[2] == "error" else None
                    if api._finish(parts[1], body if error is None else None, error):
                        self._send(202, {"status": "OK"})
                    else:
                        self._send(400, {"errorType": "InvalidRequestID", "errorMessage": parts[1]})
                else:
                    self._send(404, {"errorType": "NotFound", "errorMessage": self.path})

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _error_document(body: bytes, headers: Any) -> dict[str, Any]:
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = {"errorMessage": body.decode(errors="replace")}
    if not isinstance(document, dict):
        document = {"errorMessage": document}
    document.setdefault("errorType", headers.get("Lambda-Runtime-Function-Error-Type") or "Unknown")
    return document


def _trace_header() -> str:
    """An X-Ray trace header as Lambda sends it (not sampled: no X-Ray daemon here)."""
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"
