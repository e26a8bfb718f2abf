"""An app's secret: what is accepted, what is a configuration error, and what never leaks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from token_vending.app_config import AppConfig, parse_app_config
from token_vending.errors import AccessDenied, ConfigurationError, InvalidScope

CLIENT_SECRET = "s3cr3t-Zq8vR2-never-print-me"
CLIENT_ID = "client-id-0001"
ROLE = "arn:aws:iam::111122223333:role/billing-service"


def secret(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "allowed_scopes": ["cx.agent-calls", "cx.queue-calls"],
        "allowed_callers": [ROLE, "444455556666"],
    }
    data.update(overrides)
    return data


def parse(data: Any, version_id: str = "v1") -> AppConfig:
    return parse_app_config("demo", json.dumps(data), version_id)


def config_error(secret_string: str | None) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        parse_app_config("demo", secret_string, "v1")
    return caught.value


def assert_nothing_secret_in(error: ConfigurationError) -> None:
    """Neither the detail (logged) nor the caller-facing text holds the secret."""
    for text in (error.detail, error.description, str(error), repr(error)):
        assert CLIENT_SECRET not in text
    assert error.status == 500
    assert error.code == "internal_error"
    assert error.app == "demo"


def test_valid_secret() -> None:
    config = parse(secret(), version_id="ver-123")
    assert config.app == "demo"
    assert config.client_id == CLIENT_ID
    assert config.client_secret == CLIENT_SECRET
    assert config.allowed_scopes == frozenset({"cx.agent-calls", "cx.queue-calls"})
    assert config.allowed_callers == (ROLE, "444455556666")
    assert config.version_id == "ver-123"


def test_unknown_fields_are_ignored() -> None:
    assert parse(secret(description="billing app", owner="team-a")).client_id == CLIENT_ID


@pytest.mark.parametrize(
    "secret_string",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("client_secret=" + CLIENT_SECRET, id="key-value"),
        pytest.param('{"client_id": "x", "client_secret": "' + CLIENT_SECRET + '"', id="truncated-json"),
        pytest.param("{'client_id': 'x', 'client_secret': '" + CLIENT_SECRET + "'}", id="single-quotes"),
        pytest.param(CLIENT_SECRET, id="bare-secret"),
    ],
)
def test_secret_that_is_not_json_is_a_configuration_error(secret_string: str | None) -> None:
    error = config_error(secret_string)
    assert "JSON" in error.detail
    assert_nothing_secret_in(error)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([CLIENT_ID, CLIENT_SECRET], id="array"),
        pytest.param(CLIENT_SECRET, id="string"),
        pytest.param(42, id="number"),
        pytest.param(None, id="null"),
        pytest.param(True, id="bool"),
    ],
)
def test_json_that_is_not_an_object_is_a_configuration_error(value: Any) -> None:
    error = config_error(json.dumps(value))
    assert "object" in error.detail
    assert_nothing_secret_in(error)


@pytest.mark.parametrize("field", ["client_id", "client_secret"])
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("<missing>", id="missing"),
        pytest.param("", id="empty"),
        pytest.param(None, id="null"),
        pytest.param(123, id="number"),
        pytest.param([CLIENT_SECRET], id="list"),
        pytest.param({"value": CLIENT_SECRET}, id="object"),
    ],
)
def test_missing_or_empty_credentials_are_a_configuration_error(field: str, bad: Any) -> None:
    data = secret()
    if bad == "<missing>":
        del data[field]
    else:
        data[field] = bad
    error = config_error(json.dumps(data))
    assert field in error.detail
    assert_nothing_secret_in(error)


def test_missing_client_secret_error_names_the_field_and_not_the_client_id_value() -> None:
    data = secret()
    del data["client_secret"]
    error = config_error(json.dumps(data))
    assert "client_secret" in error.detail
    assert CLIENT_ID not in error.detail


@pytest.mark.parametrize("field", ["allowed_scopes", "allowed_callers"])
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(CLIENT_SECRET, id="string"),
        pytest.param(["ok", 3], id="mixed-list"),
        pytest.param({"a": CLIENT_SECRET}, id="object"),
        pytest.param(7, id="number"),
    ],
)
def test_allowed_lists_of_the_wrong_type_are_a_configuration_error(field: str, bad: Any) -> None:
    error = config_error(json.dumps(secret(**{field: bad})))
    assert field in error.detail
    assert_nothing_secret_in(error)


@pytest.mark.parametrize("field", ["allowed_scopes", "allowed_callers"])
@pytest.mark.parametrize("value", ["<missing>", None, []], ids=["missing", "null", "empty"])
def test_missing_allowed_lists_are_empty_and_fail_closed(field: str, value: Any) -> None:
    data = secret()
    if value == "<missing>":
        del data[field]
    else:
        data[field] = value
    config = parse(data)
    assert not getattr(config, field)
    assert len(getattr(config, field)) == 0


def test_secret_with_only_credentials_allows_nothing() -> None:
    config = parse({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert config.allowed_callers == ()
    assert config.allowed_scopes == frozenset()


def test_configuration_error_never_holds_the_secret_even_in_its_cause() -> None:
    error = config_error('{"client_id": "x", "client_secret": "' + CLIENT_SECRET + '",}')
    # `raise ... from None`: a logged traceback shows no JSON decoder error quoting the document.
    assert error.__cause__ is None
    assert error.__suppress_context__


# --- credential_id ------------------------------------------------------------------------------------------


def test_credential_id_is_stable_for_the_same_credentials() -> None:
    assert parse(secret()).credential_id == parse(secret(), version_id="v2").credential_id


def test_credential_id_changes_with_the_client_id() -> None:
    assert parse(secret()).credential_id != parse(secret(client_id="client-id-0002")).credential_id


def test_credential_id_changes_with_the_client_secret() -> None:
    assert parse(secret()).credential_id != parse(secret(client_secret=CLIENT_SECRET + "x")).credential_id


def test_credential_id_does_not_confuse_where_id_ends_and_secret_begins() -> None:
    one = parse(secret(client_id="ab", client_secret="c"))
    other = parse(secret(client_id="a", client_secret="bc"))
    assert one.credential_id != other.credential_id


def test_credential_id_ignores_policy_changes() -> None:
    before = parse(secret())
    after = parse(secret(allowed_callers=["999999999999"], allowed_scopes=["cx.other"]), version_id="v2")
    assert before.credential_id == after.credential_id


def test_credential_id_changes_with_the_token_url() -> None:
    sandbox = parse_app_config("demo", json.dumps(secret()), "v1", "https://sandbox.example/oauth/token")
    production = parse_app_config("demo", json.dumps(secret()), "v1", "https://auth.sangoma.com/oauth/token")
    assert sandbox.credential_id != production.credential_id


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("client_secret", "p\u00e4ss-\u20ac", "client_secret cannot be sent with Basic auth"),
    ("client_id", "\u4e2d-client", "client_id cannot be sent with Basic auth"),
    ("client_id", "client:one", "client_id cannot be sent with Basic auth (it holds a colon)"),
])
def test_credentials_basic_auth_cannot_carry_are_a_configuration_error_naming_only_the_field(
        field: str, value: str, problem: str) -> None:
    error = config_error(json.dumps(secret(**{field: value})))
    assert error.detail == problem
    for text in (error.detail, error.description, str(error), repr(error)):
        assert value not in text and "\u20ac" not in text and "\u4e2d" not in text


def test_latin1_credentials_are_accepted() -> None:
    assert parse(secret(client_secret="caf\u00e9-s3cret")).client_secret == "caf\u00e9-s3cret"


# --- authorization decisions --------------------------------------------------------------------------------


def test_a_configuration_answers_like_the_policy_and_raises_a_fresh_refusal_each_time() -> None:
    config = parse(secret())
    session = "arn:aws:sts::111122223333:assumed-role/billing-service/s1"
    config.authorize(session, ("cx.agent-calls",))
    config.authorize(session, ("cx.agent-calls",))  # remembered, still allowed
    refusals = []
    for _ in range(2):
        with pytest.raises(InvalidScope) as caught:
            config.authorize(session, ("cx.admin",))
        refusals.append(caught.value)
    assert refusals[0] is not refusals[1]
    assert refusals[0].description == refusals[1].description
    with pytest.raises(AccessDenied):
        config.authorize("arn:aws:sts::999999999999:assumed-role/billing-service/s1", ("cx.agent-calls",))
    with pytest.raises(AccessDenied):
        config.authorize(None, ("cx.agent-calls",))


def test_a_policy_change_is_a_new_configuration_with_its_own_decisions() -> None:
    session = "arn:aws:sts::111122223333:assumed-role/billing-service/s1"
    before = parse(secret())
    before.authorize(session, ("cx.agent-calls",))
    after = parse(secret(allowed_callers=["999999999999"]), version_id="v2")
    with pytest.raises(AccessDenied):
        after.authorize(session, ("cx.agent-calls",))


def test_credential_id_does_not_reveal_the_secret() -> None:
    credential_id = parse(secret()).credential_id
    assert CLIENT_SECRET not in credential_id
    assert CLIENT_ID not in credential_id


# --- never printed ------------------------------------------------------------------------------------------


def test_repr_and_str_never_contain_the_client_secret() -> None:
    config = parse(secret())
    assert CLIENT_SECRET not in repr(config)
    assert CLIENT_SECRET not in str(config)
    assert CLIENT_SECRET not in f"{config}"
    assert CLIENT_SECRET not in repr([config])
    assert CLIENT_ID in repr(config)  # the rest stays useful in a debug print
