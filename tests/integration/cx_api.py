"""A stand-in for a Sangoma CX API on 127.0.0.1: a real HTTP server that takes bearer tokens.

It accepts any bearer token it has not been told to refuse, as a CX API accepts a token until
it is revoked; `refuse(token)` revokes one, `refuse_all` turns every request away. Each request
is recorded (method, path, token, body) for the tests to count and compare.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class CxRequest:
    method: str
    path: str
    token: str | None  # what followed "Bearer " in the Authorization header
    body: bytes


class CxApiStub:
    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.refuse_all = False
        self.redirect_to: str | None = None  # answer 307 to this URL instead
        self.received: list[CxRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def refuse(self, token: str) -> None:
        with self._lock:
            self.refused.add(token)

    def __enter__(self) -> CxApiStub:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: CxRequest) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            self.received.append(request)
            if self.redirect_to:
                return 307, {"Location": self.redirect_to}, {}
            if request.token is None or self.refuse_all or request.token in self.refused:
                return 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, {"message": "Unauthorized"}
        return 200, {}, {"path": request.path, "body": request.body.decode()}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real API: the resend reuses the connection

            def handle(self) -> None:
                try:
                    super().handle()
                except ConnectionError:  # the client hung up (a reset): that ends the connection, not the server
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                body = self._read_body()
                scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
                request = CxRequest(self.command, self.path, token if scheme == "Bearer" and token else None, body)
                status, headers, answer = stub._answer(request)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json",
                                    "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _read_body(self) -> bytes:
                # http.server leaves chunked bodies (what requests sends for an iterator) to the handler.
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()  # the blank line after the last chunk
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

        return Handler
