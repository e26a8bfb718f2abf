"""Start the embedded local stack and provision it like the deployed one.

    with LocalStack() as stack:
        stack.add_app("demo", allowed_callers=[...], allowed_scopes=[...])
        os.environ.update(stack.env)   # then call the real handler

The stub token endpoint knows only the credentials add_app registers, unless
accept_every_app() makes it accept every app whose secret is in the stack (what
`make serve` does, so an app stored with `tools.apps put --local` vends too).
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.request
from typing import Any

import boto3

from .local_aws import KEY_ALIAS, REGION, SECRET_PREFIX, TABLE_NAME
from .moto_server import MotoServer
from .stub_token_endpoint import StubTokenEndpoint
from .template import table_definition, ttl_attribute

__all__ = ["DEFAULT_SCOPES", "KEY_ALIAS", "REGION", "SECRET_PREFIX", "TABLE_NAME", "LocalStack"]
DEFAULT_SCOPES = ("cx.agent-calls", "cx.queue-calls")


def function_env(moto_url: str, token_url: str, region: str = REGION) -> dict[str, str]:
    """The function's environment against a local stack at these URLs (the names template.yaml sets)."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "TOKEN_TABLE_NAME": TABLE_NAME,
        "TOKEN_KMS_KEY_ID": KEY_ALIAS,
        "SECRET_PREFIX": SECRET_PREFIX,
        "TOKEN_URL": token_url,
        "POWERTOOLS_SERVICE_NAME": "token-vending",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


class LocalStack:
    def __init__(self, moto_port: int = 0, token_port: int = 0) -> None:
        """Ports 0 pick free ones (tests); `make serve` fixes them so URLs can be written down."""
        self.moto = MotoServer(port=moto_port)
        self.token_endpoint = StubTokenEndpoint(port=token_port)
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def start(self) -> LocalStack:
        self.moto.start()
        self.token_endpoint.start()
        self.provision()
        return self

    def stop(self) -> None:
        self.token_endpoint.stop()
        self.moto.stop()

    @property
    def env(self) -> dict[str, str]:
        """The function's environment against this stack (the names template.yaml sets)."""
        return function_env(self.moto.url, self.token_endpoint.url)

    def client(self, service: str) -> Any:
        """A boto3 client of the service on this stack, made once (making one takes longer than most calls)."""
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(  # type: ignore[call-overload]
                    service, endpoint_url=self.moto.url, region_name=REGION,
                    aws_access_key_id="testing", aws_secret_access_key="testing")
            return self._clients[service]

    def provision(self) -> None:
        """Create the table (from template.yaml's definition) and the KMS key with its alias."""
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(**table_definition(TABLE_NAME))
        dynamodb.update_time_to_live(TableName=TABLE_NAME, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ttl_attribute()})
        kms = self.client("kms")
        key_id = kms.create_key(Description="seals cached Sangoma tokens (local)")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=KEY_ALIAS, TargetKeyId=key_id)

    def reset(self) -> None:
        """Empty every AWS resource and the stub, then provision again: a clean slate per test."""
        request = urllib.request.Request(self.moto.url + "/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        self.token_endpoint.reset()
        self.moto.calls.clear()
        self.provision()
        self.moto.calls.clear()

    def add_app(self, app: str, *, allowed_callers: list[str], allowed_scopes: list[str] | None = None,
                client_id: str | None = None, client_secret: str | None = None,
                register_with_endpoint: bool = True) -> dict[str, Any]:
        """Create (or give a new version to) the app's secret; the stub learns its credentials."""
        secret = {
            "client_id": client_id or f"{app}-client",
            "client_secret": client_secret or "cs_" + secrets.token_urlsafe(24),
            "allowed_scopes": list(DEFAULT_SCOPES if allowed_scopes is None else allowed_scopes),
            "allowed_callers": allowed_callers,
        }
        self.put_secret(app, json.dumps(secret))
        if register_with_endpoint:
            self.token_endpoint.clients[secret["client_id"]] = secret["client_secret"]
        return secret

    def accept_every_app(self, prefix: str = SECRET_PREFIX) -> None:
        """From now on the stub accepts the current credentials of every app secret under the prefix."""
        self.token_endpoint.credentials_source = lambda: self.app_credentials(prefix)

    def app_credentials(self, prefix: str = SECRET_PREFIX) -> dict[str, str]:
        """client_id -> client_secret of every app secret under the prefix (current versions; not deleted)."""
        # Called from the stub's request threads: a session of its own (boto3's default one is not thread-safe).
        manager = boto3.session.Session().client(
            "secretsmanager", endpoint_url=self.moto.url, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing")
        found: dict[str, str] = {}
        for page in manager.get_paginator("list_secrets").paginate(
                Filters=[{"Key": "name", "Values": [prefix]}]):
            for listed in page["SecretList"]:
                if not listed["Name"].startswith(prefix):
                    continue
                try:
                    data = json.loads(manager.get_secret_value(SecretId=listed["ARN"]).get("SecretString") or "")
                except (ValueError, manager.exceptions.ResourceNotFoundException,
                        manager.exceptions.InvalidRequestException):
                    continue  # not JSON, or deleted meanwhile: no credentials to accept
                if isinstance(data, dict) and isinstance(data.get("client_id"), str) \
                        and isinstance(data.get("client_secret"), str):
                    found[data["client_id"]] = data["client_secret"]
        return found

    def put_secret(self, app: str, secret_string: str) -> str:
        """Store a raw SecretString (new secret or new AWSCURRENT version); returns the VersionId."""
        manager = self.client("secretsmanager")
        name = SECRET_PREFIX + app
        try:
            return str(manager.put_secret_value(SecretId=name, SecretString=secret_string)["VersionId"])
        except manager.exceptions.ResourceNotFoundException:
            return str(manager.create_secret(Name=name, SecretString=secret_string)["VersionId"])

    def table_items(self) -> list[dict[str, Any]]:
        return list(self.client("dynamodb").scan(TableName=TABLE_NAME)["Items"])
