"""Input checks that run before any AWS or network call: app name, scopes, fingerprint."""

from __future__ import annotations

import pytest
from token_vending.errors import InvalidRequest
from token_vending.request_input import (
    ApiCall,
    TokenRequest,
    normalize_scopes,
    parse_app,
    parse_fingerprint,
    parse_token_request,
)

# Every character RFC 6749 §3.3 allows in a scope token: %x21 / %x23-5B / %x5D-7E.
RFC6749_SCOPE_CHARS = "".join(chr(c) for c in [0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F)])


def assert_invalid_request(error: InvalidRequest) -> None:
    assert error.status == 400
    assert error.code == "invalid_request"


# --- app name -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "Z",
        "7",
        "demo",
        "billing-service",
        "billing_service",
        "App-2_x",
        "0-",
        "a_",
        "a" * 64,
        "A" + "_-9" * 21,  # 64 characters, all kinds
    ],
)
def test_valid_app_names_are_returned_unchanged(name: str) -> None:
    assert parse_app(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a" * 65, id="65-chars"),
        pytest.param("-demo", id="leading-dash"),
        pytest.param("_demo", id="leading-underscore"),
        pytest.param("-", id="dash-only"),
        pytest.param("_", id="underscore-only"),
        pytest.param("demo.app", id="dot"),
        pytest.param(".", id="single-dot"),
        pytest.param("..", id="dot-dot"),
        pytest.param("../other", id="parent-path"),
        pytest.param("team/demo", id="slash"),
        pytest.param("demo/", id="trailing-slash"),
        pytest.param("demo%2Fother", id="encoded-slash"),
        pytest.param("demo%2fother", id="encoded-slash-lower"),
        pytest.param("demo app", id="space"),
        pytest.param(" demo", id="leading-space"),
        pytest.param("demo ", id="trailing-space"),
        pytest.param("demo\n", id="trailing-newline"),
        pytest.param("demo\r\n", id="trailing-crlf"),
        pytest.param("\ndemo", id="leading-newline"),
        pytest.param("demo\t", id="trailing-tab"),
        pytest.param("demo\x00", id="nul"),
        pytest.param("démo", id="unicode-letter"),
        pytest.param("demo\u0661", id="unicode-digit"),
        pytest.param("\uff44emo", id="fullwidth-letter"),
        pytest.param("demo*", id="star"),
        pytest.param("demo+x", id="plus"),
        pytest.param("demo:x", id="colon"),
        pytest.param("demo?x", id="question-mark"),
        pytest.param("", id="empty"),
        pytest.param(None, id="none"),
    ],
)
def test_invalid_app_names_are_rejected(name: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_app(name)
    assert_invalid_request(caught.value)


def test_app_name_error_does_not_echo_the_name() -> None:
    hostile = "x" * 70 + "<script>"
    with pytest.raises(InvalidRequest) as caught:
        parse_app(hostile)
    assert hostile not in caught.value.description


# --- scopes -------------------------------------------------------------------------------------------------


def test_scopes_are_sorted_and_unique() -> None:
    assert normalize_scopes(["b a a"]) == ("a", "b")


def test_order_and_duplicates_do_not_change_the_request() -> None:
    assert normalize_scopes(["b a a"]) == normalize_scopes(["a b"])
    assert parse_token_request("demo", ["b a a"]) == parse_token_request("demo", ["a b"])


def test_real_sangoma_scopes() -> None:
    scopes = normalize_scopes(["cx.queue-calls cx.agent-calls"])
    assert scopes == ("cx.agent-calls", "cx.queue-calls")


def test_repeated_parameter_values_are_merged() -> None:
    assert normalize_scopes(["b", "a"]) == ("a", "b")
    assert normalize_scopes(["c a", "b a", "c"]) == ("a", "b", "c")


@pytest.mark.parametrize("value", ["a  b", " a b", "a b ", "  a   b  "])
def test_doubled_and_edge_spaces_are_tolerated(value: str) -> None:
    assert normalize_scopes([value]) == ("a", "b")


def test_blank_values_among_repeated_parameters_are_ignored() -> None:
    assert normalize_scopes(["", "a", "   "]) == ("a",)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(None, id="none"),
        pytest.param([], id="no-values"),
        pytest.param([""], id="empty-string"),
        pytest.param([" "], id="one-space"),
        pytest.param(["     "], id="only-spaces"),
        pytest.param(["", "  "], id="repeated-blanks"),
    ],
)
def test_no_scope_is_an_invalid_request(values: list[str] | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_scopes(values)
    assert_invalid_request(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('cx."quoted"', id="double-quote"),
        pytest.param('"', id="lone-double-quote"),
        pytest.param("cx\\agent", id="backslash"),
        pytest.param("\\", id="lone-backslash"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\nb", id="newline"),
        pytest.param("a\n", id="trailing-newline"),
        pytest.param("a\rb", id="carriage-return"),
        pytest.param("a\x00", id="nul"),
        pytest.param("a\x7f", id="del"),
        pytest.param("a\x1f", id="control"),
        pytest.param("cx.agent-calls\u00e9", id="latin1"),
        pytest.param("cx.\u00a0calls", id="nbsp"),
        pytest.param("scope\u2003x", id="em-space"),
        pytest.param("\u30b9\u30b3\u30fc\u30d7", id="katakana"),
        pytest.param("cx.\U0001f600", id="emoji"),
    ],
)
def test_malformed_scope_tokens_are_rejected(value: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_scopes([value])
    assert_invalid_request(caught.value)


def test_one_malformed_token_among_good_ones_rejects_the_request() -> None:
    with pytest.raises(InvalidRequest):
        normalize_scopes(["cx.agent-calls", 'cx.queue-calls bad"one'])


def test_every_rfc6749_scope_character_is_accepted() -> None:
    assert len(RFC6749_SCOPE_CHARS) == 1 + (0x5B - 0x23 + 1) + (0x7E - 0x5D + 1)
    assert normalize_scopes([RFC6749_SCOPE_CHARS]) == (RFC6749_SCOPE_CHARS,)


@pytest.mark.parametrize("char", list(RFC6749_SCOPE_CHARS))
def test_each_rfc6749_scope_character_alone_is_a_scope(char: str) -> None:
    assert normalize_scopes([f"x{char}y"]) == (f"x{char}y",)


@pytest.mark.parametrize("code", [c for c in range(0x00, 0x100) if chr(c) not in RFC6749_SCOPE_CHARS + " "])
def test_each_character_outside_rfc6749_is_rejected(code: int) -> None:
    with pytest.raises(InvalidRequest):
        normalize_scopes([f"x{chr(code)}y"])


def test_thirty_two_distinct_scopes_are_allowed() -> None:
    scopes = [f"s{i:02d}" for i in range(32)]
    assert normalize_scopes([" ".join(scopes)]) == tuple(sorted(scopes))


def test_thirty_three_distinct_scopes_are_rejected() -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_scopes([" ".join(f"s{i:02d}" for i in range(33))])
    assert_invalid_request(caught.value)


def test_thirty_three_scopes_across_repeated_parameters_are_rejected() -> None:
    with pytest.raises(InvalidRequest):
        normalize_scopes([f"s{i:02d}" for i in range(33)])


def test_duplicates_do_not_count_towards_the_limit() -> None:
    scopes = [f"s{i:02d}" for i in range(32)]
    assert len(normalize_scopes([" ".join(scopes), " ".join(scopes), scopes[0]])) == 32


# --- the whole request --------------------------------------------------------------------------------------


def test_parse_token_request_gives_the_normalized_scope_string() -> None:
    request = parse_token_request("demo", ["cx.queue-calls  cx.agent-calls", "cx.agent-calls"])
    assert request == TokenRequest(app="demo", scopes=("cx.agent-calls", "cx.queue-calls"))
    assert request.scope == "cx.agent-calls cx.queue-calls"


def test_different_scope_sets_are_different_requests() -> None:
    assert parse_token_request("demo", ["a b"]) != parse_token_request("demo", ["a"])
    assert parse_token_request("demo", ["a"]) != parse_token_request("other", ["a"])


def test_bad_app_name_is_rejected_even_with_good_scopes() -> None:
    with pytest.raises(InvalidRequest):
        parse_token_request("../secret", ["cx.agent-calls"])


def test_missing_scope_is_rejected_even_with_good_app() -> None:
    with pytest.raises(InvalidRequest):
        parse_token_request("demo", None)


# --- fingerprint --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0123456789abcdef", "0" * 16, "f" * 16, "deadbeefcafef00d"])
def test_valid_fingerprints(value: str) -> None:
    assert parse_fingerprint(value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("0123456789abcde", id="15-chars"),
        pytest.param("0123456789abcdef0", id="17-chars"),
        pytest.param("0123456789ABCDEF", id="uppercase"),
        pytest.param("0123456789abcdeF", id="one-uppercase"),
        pytest.param("0123456789abcdeg", id="non-hex"),
        pytest.param("0123456789abcdef\n", id="trailing-newline"),
        pytest.param(" 0123456789abcdef", id="leading-space"),
        pytest.param("0123456789abcde\u0661", id="unicode-digit"),
        pytest.param("0x23456789abcdef", id="hex-prefix"),
        pytest.param("0123456789abcdef" * 4, id="whole-sha256"),
    ],
)
def test_invalid_fingerprints_are_rejected(value: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_fingerprint(value)
    assert_invalid_request(caught.value)


# --- the API event as sent ----------------------------------------------------------------------------------


def api_event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "httpMethod": "GET", "pathParameters": {"app": "billing"},
        "queryStringParameters": {"scope": "cx.b", "fingerprint": "0123456789abcdef"},
        "multiValueQueryStringParameters": {"scope": ["cx.a", "cx.b"], "fingerprint": ["0123456789abcdef"]},
        "requestContext": {"identity": {"userArn": "arn:aws:iam::111122223333:user/ops"}},
    }
    event.update(overrides)
    return event


def test_an_api_call_is_what_the_event_carries_as_sent() -> None:
    call = ApiCall.from_event(api_event())

    assert call == ApiCall(method="GET", app="billing", scope_values=("cx.a", "cx.b"),
                           fingerprint="0123456789abcdef", caller_arn="arn:aws:iam::111122223333:user/ops")


def test_a_single_valued_scope_counts_when_no_repeated_form_is_sent() -> None:
    call = ApiCall.from_event(api_event(multiValueQueryStringParameters=None))

    assert call.scope_values == ("cx.b",)


@pytest.mark.parametrize("context", [None, {}, {"identity": None}, {"identity": {"userArn": ""}},
                                     {"identity": {"userArn": 7}}])
def test_missing_pieces_of_an_event_mean_no_identity_and_no_input_not_a_crash(context: object) -> None:
    call = ApiCall.from_event({"requestContext": context, "pathParameters": None, "queryStringParameters": None})

    assert call == ApiCall(method="", app=None, scope_values=(), fingerprint=None, caller_arn=None)
