"""The client's pure parts: scope sets, fingerprints, regions, error mapping inputs."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from email.utils import formatdate
from pathlib import Path

import botocore.session
import pytest
from sangoma_token_client import Token, TokenClient, TokenVendingError, fingerprint, normalize_scopes
from sangoma_token_client.client import _retry_after
from token_vending import tokens


def test_scope_order_duplicates_and_spacing_make_one_scope_set() -> None:
    assert normalize_scopes("b a  a ") == ("a", "b")
    assert normalize_scopes(["b", "a b"]) == ("a", "b")


def test_fingerprint_is_the_one_the_service_computes() -> None:
    assert fingerprint("sgm_abc") == tokens.fingerprint("sgm_abc")
    assert len(fingerprint("sgm_abc")) == 16


def a_token() -> Token:
    return Token("sgm_secret_value", "bearer", "a b", 10, "2026-01-01T00:00:00Z", fingerprint("sgm_secret_value"))


def test_token_repr_and_error_text_never_show_the_token() -> None:
    token = a_token()

    assert "sgm_secret_value" not in repr(token)
    assert "sgm_secret_value" not in str(token)
    assert "sgm_secret_value" not in f"{token}"
    assert token.as_dict()["access_token"] == "sgm_secret_value"  # only when asked for explicitly


def test_token_fields_read_by_name_like_the_json_answer() -> None:
    token = a_token()

    assert token["access_token"] == token.access_token == "sgm_secret_value"
    assert {name: token[name] for name in token.as_dict()} == token.as_dict()
    assert token["expires_in"] == 10
    assert "scope" in token and "as_dict" not in token and "nope" not in token
    for name in ("nope", "as_dict", "__class__", "_TOKEN_FIELDS"):
        with pytest.raises(KeyError):
            token[name]
    with pytest.raises(TypeError):
        iter(token)  # not a sequence of fields by index


def test_error_code_and_description_are_read_only_aliases() -> None:
    error = TokenVendingError("invalid_scope", "cx.admin is not allowed", status=403)

    assert (error.code, error.description) == ("invalid_scope", "cx.admin is not allowed")
    assert str(error) == "invalid_scope: cx.admin is not allowed"
    with pytest.raises(AttributeError):
        error.code = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        error.description = "other"  # type: ignore[misc]
    assert error.error == "invalid_scope"


@pytest.mark.parametrize(("url", "region"), [
    ("https://abc123.execute-api.eu-west-2.amazonaws.com/v1", "eu-west-2"),
    ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/v1/", "cn-north-1"),
])
def test_region_comes_from_an_execute_api_url(url: str, region: str) -> None:
    assert TokenClient(url, session=botocore.session.Session()).region == region


@pytest.fixture
def no_region_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No region anywhere: no variables, an empty AWS config file (returned, to write one into)."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    return config


def test_explicit_region_wins_and_a_missing_one_is_an_error(no_region_configured: Path) -> None:
    assert TokenClient("https://abc.execute-api.us-east-2.amazonaws.com", region="us-west-1").region == "us-west-1"
    with pytest.raises(TokenVendingError) as raised:
        TokenClient("https://vending.internal.example/v1").get_token("demo", "a")
    assert raised.value.error == "no_region"
    # It names what actually works: botocore's configuration alone ignores AWS_REGION.
    assert "AWS_REGION" in raised.value.error_description
    assert "AWS_DEFAULT_REGION" in raised.value.error_description


LOOPBACK_URLS = ["http://127.0.0.1:8710", "http://127.0.0.2:1/v1", "http://localhost:8710", "http://LOCALHOST.:8710",
                 "http://[::1]:8710", "HTTP://127.255.255.254"]


@pytest.mark.parametrize("url", LOOPBACK_URLS)
def test_a_loopback_url_with_no_region_configured_signs_for_the_local_gateways_region(
        no_region_configured: Path, url: str) -> None:
    assert TokenClient(url).region == "us-east-1"


@pytest.mark.parametrize("url", ["https://vending.internal.example", "https://10.0.0.5:8710",
                                 "https://127.0.0.1.example.com", "https://localhost.example.com",
                                 "https://gw.localhost:8710"])
def test_other_hosts_with_no_region_configured_have_none(no_region_configured: Path, url: str) -> None:
    assert TokenClient(url).region is None


# -- plain http only on loopback: signed requests and tokens never cross a network in clear -------


@pytest.mark.parametrize("url", [
    "http://vending.internal.example/v1",
    "http://abc123.execute-api.eu-west-2.amazonaws.com/v1",
    "http://10.0.0.5:8710",
    "http://127.0.0.1.example.com",  # a name that only starts like a loopback address
    "http://localhost.example.com",
    "http://gw.localhost:8710",  # *.localhost goes to the resolver, which may send it anywhere
    "http://0.0.0.0:8710",
])
def test_plain_http_to_anything_but_loopback_is_refused_at_construction(url: str) -> None:
    with pytest.raises(TokenVendingError) as raised:
        TokenClient(url, region="us-east-1", session=botocore.session.Session())

    assert raised.value.error == "insecure_url"
    assert "https://" in raised.value.error_description
    assert raised.value.status is None


@pytest.mark.parametrize("url", [*LOOPBACK_URLS, "https://abc123.execute-api.eu-west-2.amazonaws.com/v1",
                                 "HTTPS://vending.internal.example"])
def test_https_anywhere_and_plain_http_on_loopback_are_accepted(url: str) -> None:
    assert TokenClient(url, region="us-east-1", session=botocore.session.Session()).url == url.rstrip("/")


@pytest.mark.parametrize("url", ["vending.internal.example/v1", "ftp://vending.internal.example", "https:///v1",
                                 "http://[::1", ""])
def test_a_url_that_is_not_http_at_all_is_refused(url: str) -> None:
    with pytest.raises(TokenVendingError) as raised:
        TokenClient(url, region="us-east-1", session=botocore.session.Session())

    assert raised.value.error == "invalid_url"


def test_the_shared_client_refuses_a_plain_http_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import sangoma_token_client

    monkeypatch.setattr(sangoma_token_client, "_default", None)
    monkeypatch.setenv("SANGOMA_TOKEN_VENDING_URL", "http://vending.internal.example/v1")
    monkeypatch.setenv("SANGOMA_TOKEN_VENDING_REGION", "us-east-1")

    with pytest.raises(TokenVendingError) as raised:
        sangoma_token_client.get_token("demo", "a")

    assert raised.value.error == "insecure_url"


def test_region_order_explicit_url_aws_region_aws_default_region_then_config(
        no_region_configured: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    aws_url, other_url = "https://abc.execute-api.eu-west-2.amazonaws.com/v1", "https://vending.internal.example"
    no_region_configured.write_text("[default]\nregion = ap-south-1\n")
    assert TokenClient(other_url).region == "ap-south-1"  # the profile's region
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    assert TokenClient(other_url).region == "ca-central-1"
    monkeypatch.setenv("AWS_REGION", "sa-east-1")  # read by the client itself: botocore's config ignores it
    assert TokenClient(other_url).region == "sa-east-1"
    assert TokenClient(aws_url).region == "eu-west-2"  # the URL names the API's region
    assert TokenClient(aws_url, region="us-west-1").region == "us-west-1"


def test_a_loopback_url_signs_for_the_local_stack_whatever_the_shell_says(
        no_region_configured: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A developer's shell is set up for their own AWS region; the local gateway accepts the local stack's.
    no_region_configured.write_text("[default]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    state = tmp_path / ".local-stack.json"
    monkeypatch.setenv("SANGOMA_LOCAL_STACK_FILE", str(state))
    assert TokenClient("http://127.0.0.1:8710").region == "us-east-1"  # no make serve running: its default
    state.write_text('{"moto_port": 8711, "token_port": 8712, "gateway_port": 8710, "region": "eu-north-1", '
                     '"pid": 1}')
    assert TokenClient("http://127.0.0.1:8710").region == "eu-north-1"  # the running one's
    assert TokenClient("http://localhost:8710", region="us-west-1").region == "us-west-1"  # passed: wins
    state.write_text("not json")
    assert TokenClient("http://127.0.0.1:8710").region == "us-east-1"


@pytest.mark.parametrize("url", ["https://127.0.0.1:8443/v1", "https://localhost:8443", "https://[::1]/v1"])
def test_an_https_url_to_this_machine_signs_for_the_configured_region_not_the_local_stacks(
        no_region_configured: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    # Not make serve's gateway (that is plain http): a tunnel or proxy to a deployed API in the configured region.
    state = tmp_path / ".local-stack.json"
    state.write_text('{"moto_port": 8711, "token_port": 8712, "gateway_port": 8710, "region": "eu-north-1", '
                     '"pid": 1}')
    monkeypatch.setenv("SANGOMA_LOCAL_STACK_FILE", str(state))
    assert TokenClient(url).region is None  # nothing configured: no_region when it signs, never the file's

    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert TokenClient(url).region == "eu-west-1"
    assert TokenClient("http://127.0.0.1:8710").region == "eu-north-1"  # plain http loopback: the local stack's


def test_importing_the_package_does_not_import_requests() -> None:
    # A Lambda runtime has no requests: only TokenAuth needs it, and only those who use it import it.
    code = ("import sys, sangoma_token_client as c; assert 'requests' not in sys.modules; "
            "from sangoma_token_client import TokenAuth; assert 'requests' in sys.modules; print(TokenAuth.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "TokenAuth\n"


def test_a_profiles_region_is_used_for_a_named_profile(no_region_configured: Path) -> None:
    no_region_configured.write_text("[profile ops]\nregion = eu-north-1\n")

    client = TokenClient("https://vending.internal.example", session=botocore.session.Session(profile="ops"))
    assert client.region == "eu-north-1"


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    in_a_minute = _retry_after(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 55 < in_a_minute <= 60


# -- the package: installable on its own, and the layer ships only its code ---------------------

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "layers" / "client"
PACKAGE = CLIENT / "python" / "sangoma_token_client"


def third_party_imports(source: Path) -> set[str]:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    return imported - set(sys.stdlib_module_names) - {"__future__"}


def test_the_package_declares_exactly_what_it_imports() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    names = lambda requirements: {re.split(r"[<>=!~ ;\[]", requirement)[0] for requirement in requirements}  # noqa: E731
    core = set().union(*(third_party_imports(source) for source in PACKAGE.glob("*.py") if source.name != "auth.py"))

    assert names(project["dependencies"]) == core
    # TokenAuth alone needs requests: an extra, so that a Lambda function's client needs nothing the runtime lacks.
    assert names(project["optional-dependencies"]["requests"]) == third_party_imports(PACKAGE / "auth.py") - core


@pytest.mark.process
def test_the_dev_venv_imports_the_installed_package_from_anywhere(tmp_path: Path) -> None:
    # Outside the checkout and without PYTHONPATH, as a script or a container would (make installs it).
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", "import importlib.metadata as m, sangoma_token_client as c; "
                             "print(m.version('sangoma-token-client')); print(c.__file__)"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, f"run `make` (or pip install ./layers/client): {result.stderr}"
    version, location = result.stdout.split()
    assert version == tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]["version"]
    assert Path(location).name == "__init__.py"


@pytest.mark.process
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_layer_build_ships_only_the_package_code(tmp_path: Path) -> None:
    subprocess.run(["make", "--no-print-directory", "-C", str(CLIENT), "build-ClientLayer",
                    f"ARTIFACTS_DIR={tmp_path}"], check=True, capture_output=True, timeout=60)

    shipped = {str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file()}
    package = {str(path.relative_to(CLIENT)) for path in PACKAGE.rglob("*")
               if path.is_file() and "__pycache__" not in path.parts}
    bytecode = {str(Path(name).parent / "__pycache__" / f"{Path(name).stem}.cpython-313.pyc")  # for the runtime
                for name in package if name.endswith(".py")}
    assert shipped == package | bytecode
    assert {"python/sangoma_token_client/__init__.py", "python/sangoma_token_client/py.typed"} <= shipped


def test_the_command_line_says_when_to_come_back_in_seconds_and_on_the_clock() -> None:
    from datetime import UTC, datetime

    from sangoma_token_client.cli import _when_to_come_back

    now = datetime(2026, 12, 6, 14, 0, 3, tzinfo=UTC)
    assert _when_to_come_back(60, now) == "retry after 60 s, at 14:01:03 UTC"
    assert _when_to_come_back(480, now) == "retry after 480 s (8 min), at 14:08:03 UTC"
    assert _when_to_come_back(0.4, now) == "retry after 0 s, at 14:00:03 UTC"
    assert _when_to_come_back(None, now) == "retry later (the service did not say when)"
