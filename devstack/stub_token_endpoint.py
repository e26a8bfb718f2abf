"""A stand-in for Sangoma's OAuth2 token endpoint: a real HTTP server on 127.0.0.1.

By default it behaves like the real one (client_credentials grant, HTTP Basic
auth, a new opaque token per request, expires_in about 281 days). Tests script
faults with `queue(Reply(...))` and read back what it received.

It accepts the credentials in `clients`, and, when `credentials_source` is set
(`make serve` sets it: LocalStack.accept_every_app), those it returns at the time
of the request; anything else is `invalid_client`.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

DEFAULT_EXPIRES_IN = 24_304_413


@dataclass
class Reply:
    """One scripted answer. `body` may be a dict (sent as JSON) or raw text; `reset` drops the connection;
    `drip` sends the body one byte at a time, that many seconds apart."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False
    drip: float = 0.0


@dataclass(frozen=True)
class Received:
    authorization: str | None
    content_type: str | None
    client_id: str | None
    client_secret: str | None
    form: dict[str, list[str]]

    @property
    def scope(self) -> str | None:
        return self.form.get("scope", [None])[0]


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that counts the connections it has finished with (tests wait on it)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.finished = threading.Condition()
        self.finished_connections = 0

    def shutdown_request(self, request: Any) -> None:
        # Called last for every connection, after handle_error has printed anything it prints.
        super().shutdown_request(request)
        with self.finished:
            self.finished_connections += 1
            self.finished.notify_all()


class StubTokenEndpoint:
    def __init__(self, port: int = 0) -> None:
        self.clients: dict[str, str] = {}
        # Further client_id -> client_secret pairs, looked up on each request (None: only `clients`).
        self.credentials_source: Callable[[], Mapping[str, str]] | None = None
        self.received: list[Received] = []
        self.delay = 0.0  # applied to every default answer
        self.expires_in: Any = DEFAULT_EXPIRES_IN
        self.same_token = False  # answer with the token it gave before, as Sangoma does until expiry
        self._replies: list[Reply] = []
        self._issued: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/oauth/token"

    def start(self) -> StubTokenEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever() that was never started
            self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.clients.clear()
            self.received.clear()
            self._replies.clear()
            self._issued.clear()
        self.credentials_source = None
        self.delay, self.expires_in, self.same_token = 0.0, DEFAULT_EXPIRES_IN, False

    def wait_for_finished_connections(self, count: int, timeout: float = 60) -> bool:
        """Until the stub has finished with `count` connections since it started (False if not within timeout)."""
        with self._server.finished:
            return self._server.finished.wait_for(lambda: self._server.finished_connections >= count, timeout)

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def request_count(self) -> int:
        return len(self.received)

    def _answer(self, received: Received) -> Reply:
        with self._lock:
            self.received.append(received)
            if self._replies:
                return self._replies.pop(0)
        if received.client_id is None or self._secret_of(received.client_id) != received.client_secret:
            return Reply(401, {"error": "invalid_client", "error_description": "bad client credentials"})
        scope = received.scope
        if received.form.get("grant_type") != ["client_credentials"] or not scope:
            return Reply(400, {"error": "invalid_request"})
        key = (received.client_id, scope)
        with self._lock:
            token = self._issued.get(key) if self.same_token else None
            token = token or "sgm_" + secrets.token_urlsafe(32)
            self._issued[key] = token
        body = {"access_token": token, "scope": scope, "token_type": "bearer", "expires_in": self.expires_in}
        return Reply(200, body, delay=self.delay)

    def _secret_of(self, client_id: str) -> str | None:
        known = self.clients.get(client_id)
        if known is None and self.credentials_source is not None:
            known = self.credentials_source().get(client_id)
        return known

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    # The client hung up: e.g. the function stops reading an answer over its size limit and
                    # closes, which resets the connection. For an HTTP server that ends the connection; it is
                    # not a failure of the stub (socketserver would print a traceback for it).
                    self.close_connection = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                authorization = self.headers.get("Authorization")
                client_id = client_secret = None
                if authorization and authorization.startswith("Basic "):
                    decoded = base64.b64decode(authorization[6:]).decode()
                    client_id, _, client_secret = decoded.partition(":")
                reply = stub._answer(Received(authorization, self.headers.get("Content-Type"), client_id,
                                              client_secret, form))
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    # SO_LINGER 0 makes close() send a TCP reset, as a crashed server would.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                payload = (json.dumps(reply.body) if isinstance(reply.body, (dict, list)) else
                           str(reply.body or "")).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json" if isinstance(reply.body, dict) else "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if not reply.drip:
                    self.wfile.write(payload)
                    return
                try:
                    for byte in payload:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(reply.drip)
                except OSError:  # the client gave up: what a dripping server is for
                    self.close_connection = True

        return Handler
