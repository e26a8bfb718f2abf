"""moto's ThreadedMotoServer, made to behave like AWS where our tests need it to.

- One request at a time: moto's conditional writes are not atomic across
  threads, DynamoDB's are, and single-flight tests depend on that.
- Every AWS operation is recorded ("dynamodb.GetItem", "kms.Decrypt", ...), so a
  test can assert which calls a vend made, from outside the code under test.
- A service can be made to fail (`with server.outage("dynamodb"): ...`): its calls
  answer 503 ServiceUnavailable, as AWS does in an outage, while the others work.
- start() raises when the port cannot be bound (moto's own waits forever).
- Only this machine's clients: a Host other than 127.0.0.1:<port> or localhost:<port>
  (or host.docker.internal:<port>, what `sam local invoke` in Docker Desktop sends) is
  refused with 403, and no answer carries CORS headers (moto sends
  Access-Control-Allow-Origin for any Origin). Else a web page could read every local
  secret through DNS rebinding or a cross-origin request.
- A symmetric KMS key has no key pair. AWS gives it none (it cannot sign, verify
  or show a public key); moto makes an RSA-2048 pair for every key, and making one
  per test was a tenth of the test suite's CPU.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import moto.kms.models
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


def _key_pair_for_asymmetric_keys_only() -> None:
    make_key_pair = moto.kms.models.generate_private_key  # what moto's Key() calls: fail loudly if it moves

    def key_pair(key_spec: str) -> Any:
        return None if key_spec == "SYMMETRIC_DEFAULT" else make_key_pair(key_spec)

    moto.kms.models.generate_private_key = key_pair


_key_pair_for_asymmetric_keys_only()


class _QuietRequestHandler(MotoRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per AWS call drowns test output
        pass


LOCAL_HOSTS = ("127.0.0.1", "localhost", "host.docker.internal")
FORBIDDEN = b"Forbidden: this local moto server answers only Host 127.0.0.1:<port> or localhost:<port>\n"
TARGET_PREFIXES = {"DynamoDB_20120810": "dynamodb", "TrentService": "kms", "secretsmanager": "secretsmanager"}


class MotoServer(ThreadedMotoServer):
    def __init__(self, port: int = 0) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.calls: list[str] = []
        self.failing: set[str] = set()  # services whose calls answer 503
        self._lock = threading.Lock()
        self._start_error: OSError | None = None

    def _serialized(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
        def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            with self._lock:
                prefix, _, operation = target.partition(".")
                service = TARGET_PREFIXES.get(prefix, prefix)
                if target:
                    self.calls.append(f"{service}.{operation}")
                if service in self.failing:
                    start_response("503 Service Unavailable", [("Content-Type", "application/x-amz-json-1.1")])
                    return [json.dumps({"__type": "ServiceUnavailable", "message": "outage (local)"}).encode()]
                return list(app(environ, start_response))

        return wsgi

    def _local_only(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("HTTP_HOST", "").strip().lower() not in {f"{host}:{self._port}" for host in LOCAL_HOSTS}:
                start_response("403 Forbidden", [("Content-Type", "text/plain"),
                                                 ("Content-Length", str(len(FORBIDDEN)))])
                return [FORBIDDEN]

            def without_cors(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                kept = [(name, value) for name, value in headers if not name.lower().startswith("access-control-")]
                return start_response(status, kept, exc_info)

            return app(environ, without_cors)

        return wsgi

    def _server_entry(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call drowns test output
        app = self._local_only(self._serialized(DomainDispatcherApplication(create_backend_app)))
        try:
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=_QuietRequestHandler)
        except (OSError, SystemExit):  # werkzeug exits when it cannot bind: tell start(), which would wait forever
            self._start_error = OSError(f"the moto server cannot listen on {self._ip_address}:{self._port}")
            self._server_ready_event.set()
            return
        self._port = self._server.server_address[1]  # keep the port if we are restarted
        self._server_ready_event.set()
        self._server.serve_forever()

    def start(self) -> None:
        self._start_error = None
        super().start()
        if self._start_error is not None:
            raise self._start_error

    def stop(self) -> None:
        super().stop()
        if self._server:
            self._server.server_close()  # free the port, so start() can bring the same endpoint back

    @property
    def running(self) -> bool:
        return self._server_ready_event.is_set()

    @contextmanager
    def outage(self, *services: str) -> Iterator[None]:
        """While inside, calls to these services ("dynamodb", "kms", "secretsmanager") answer 503."""
        self.failing.update(services)
        try:
            yield
        finally:
            self.failing.difference_update(services)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def aws_calls(self, service: str | None = None) -> list[str]:
        return [call for call in self.calls if service is None or call.startswith(service + ".")]
