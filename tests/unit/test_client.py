"""The client's pure parts: scope sets, fingerprints, regions, error mapping inputs."""

from __future__ import annotations

import time
from email.utils import formatdate

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


def test_token_repr_and_error_text_never_show_the_token() -> None:
    token = Token("sgm_secret_value", "bearer", "a", 10, "2026-01-01T00:00:00Z", fingerprint("sgm_secret_value"))

    assert "sgm_secret_value" not in repr(token)
    assert token.as_dict()["access_token"] == "sgm_secret_value"  # only when asked for explicitly


@pytest.mark.parametrize(("url", "region"), [
    ("https://abc123.execute-api.eu-west-2.amazonaws.com/v1", "eu-west-2"),
    ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/v1/", "cn-north-1"),
])
def test_region_comes_from_an_execute_api_url(url: str, region: str) -> None:
    assert TokenClient(url, session=botocore.session.Session()).region == region


def test_explicit_region_wins_and_a_missing_one_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")

    assert TokenClient("https://abc.execute-api.us-east-2.amazonaws.com", region="us-west-1").region == "us-west-1"
    with pytest.raises(TokenVendingError) as raised:
        TokenClient("http://127.0.0.1:1").get_token("demo", "a")
    assert raised.value.error == "no_region"


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    in_a_minute = _retry_after(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 55 < in_a_minute <= 60
