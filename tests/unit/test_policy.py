"""Who may have which token: caller matching and the order of the authorization checks."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from token_vending import policy
from token_vending.errors import AccessDenied, InvalidScope, VendingError
from token_vending.policy import Caller, CallerPolicy, caller_matches

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/billing-service"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/billing-session"
USER = f"arn:aws:iam::{ACCOUNT}:user/alice"
SCOPES = ("cx.agent-calls", "cx.queue-calls")
ALLOWED_SCOPES = frozenset(SCOPES)


def authorize(caller_arn: str | None, allowed_callers: Iterable[str], scopes: Iterable[str],
              allowed_scopes: frozenset[str]) -> None:
    """The policy check on a caller ARN and allowed_callers entries, each parsed as the function parses them."""
    caller = Caller.parse(caller_arn) if caller_arn else None
    policy.authorize(caller, CallerPolicy.parse(allowed_callers), scopes, allowed_scopes)


# --- account IDs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "caller",
    [
        SESSION,
        USER,
        f"arn:aws:iam::{ACCOUNT}:user/division/team/bob",
        f"arn:aws:iam::{ACCOUNT}:root",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/anything/session@example.com",
        f"arn:aws:sts::{ACCOUNT}:federated-user/carol",
        f"arn:aws-cn:sts::{ACCOUNT}:assumed-role/r/s",
        f"arn:aws-us-gov:iam::{ACCOUNT}:user/dave",
    ],
)
def test_account_id_matches_any_principal_of_that_account(caller: str) -> None:
    assert caller_matches(caller, ACCOUNT)


@pytest.mark.parametrize(
    "caller",
    [
        f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/billing-service/s",
        f"arn:aws:iam::{OTHER_ACCOUNT}:user/{ACCOUNT}",  # the account ID elsewhere in the ARN
        f"arn:aws:iam::{OTHER_ACCOUNT}:role/{ACCOUNT}",
        f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/{ACCOUNT}/{ACCOUNT}",
    ],
)
def test_account_id_does_not_match_other_accounts(caller: str) -> None:
    assert not caller_matches(caller, ACCOUNT)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(ACCOUNT[:-1], id="11-digits"),
        pytest.param(ACCOUNT + "3", id="13-digits"),
        pytest.param("1" + ACCOUNT, id="13-digits-prefix"),
        pytest.param(ACCOUNT[1:], id="11-digits-suffix"),
        pytest.param(f" {ACCOUNT}", id="leading-space"),
        pytest.param(f"{ACCOUNT}\n", id="trailing-newline"),
        pytest.param("1111-2222-3333", id="dashed"),
        pytest.param("\uff11" * 12, id="fullwidth-digits"),
        pytest.param("\u0661" * 12, id="arabic-indic-digits"),
    ],
)
def test_account_id_entries_of_the_wrong_shape_match_nothing(entry: str) -> None:
    assert not caller_matches(SESSION, entry)
    assert not caller_matches(USER, entry)


def test_account_id_with_eleven_digits_does_not_match_a_prefix_of_the_account() -> None:
    assert not caller_matches(f"arn:aws:iam::{ACCOUNT}:user/alice", ACCOUNT[:11])


# --- IAM users ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user",
    [
        USER,
        f"arn:aws:iam::{ACCOUNT}:user/division/alice",
        f"arn:aws:iam::{ACCOUNT}:user/a/b/c/alice",
        f"arn:aws-cn:iam::{ACCOUNT}:user/alice",
        f"arn:aws-us-gov:iam::{ACCOUNT}:user/alice",
    ],
)
def test_iam_user_arn_matches_exactly(user: str) -> None:
    assert caller_matches(user, user)


@pytest.mark.parametrize(
    "caller",
    [
        f"arn:aws:iam::{ACCOUNT}:user/alice2",
        f"arn:aws:iam::{ACCOUNT}:user/ali",
        f"arn:aws:iam::{ACCOUNT}:user/other/alice",
        f"arn:aws:iam::{OTHER_ACCOUNT}:user/alice",
        f"arn:aws-cn:iam::{ACCOUNT}:user/alice",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/alice/alice",
        f"arn:aws:iam::{ACCOUNT}:role/alice",
    ],
)
def test_iam_user_arn_matches_nothing_else(caller: str) -> None:
    assert not caller_matches(caller, USER)


def test_user_with_path_does_not_match_same_name_without_path() -> None:
    assert not caller_matches(f"arn:aws:iam::{ACCOUNT}:user/division/alice", USER)


# --- roles and assumed-role sessions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session", "role"),
    [
        pytest.param(SESSION, ROLE, id="plain"),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/i-0123456789abcdef0",
            ROLE,
            id="ec2-session",
        ),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/user@example.com",
            ROLE,
            id="email-session",
        ),
        pytest.param(SESSION, f"arn:aws:iam::{ACCOUNT}:role/team/billing-service", id="role-path"),
        pytest.param(SESSION, f"arn:aws:iam::{ACCOUNT}:role/org/team/billing-service", id="deep-role-path"),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Admin_0123abcd/alice",
            f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123abcd",
            id="sso-role-path",
        ),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/svc+role=a,b.c@d-e/s+e=s,s.i@o-n",
            f"arn:aws:iam::{ACCOUNT}:role/svc+role=a,b.c@d-e",
            id="all-role-name-chars",
        ),
        pytest.param(
            f"arn:aws-cn:sts::{ACCOUNT}:assumed-role/billing-service/s",
            f"arn:aws-cn:iam::{ACCOUNT}:role/billing-service",
            id="aws-cn",
        ),
        pytest.param(
            f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/billing-service/s",
            f"arn:aws-us-gov:iam::{ACCOUNT}:role/team/billing-service",
            id="aws-us-gov",
        ),
    ],
)
def test_assumed_role_session_matches_its_role(session: str, role: str) -> None:
    assert caller_matches(session, role)


@pytest.mark.parametrize(
    ("session", "role"),
    [
        pytest.param(
            f"arn:aws-cn:sts::{ACCOUNT}:assumed-role/billing-service/s", ROLE, id="session-aws-cn-role-aws"
        ),
        pytest.param(
            SESSION, f"arn:aws-us-gov:iam::{ACCOUNT}:role/billing-service", id="session-aws-role-us-gov"
        ),
        pytest.param(
            f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/billing-service/s",
            f"arn:aws-cn:iam::{ACCOUNT}:role/billing-service",
            id="session-us-gov-role-cn",
        ),
        pytest.param(
            f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/billing-service/s", ROLE, id="other-account"
        ),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/payroll-service/s", ROLE, id="other-role"
        ),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/s",
            f"arn:aws:iam::{ACCOUNT}:role/billing",
            id="role-is-prefix-of-session-role",
        ),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/billing/s",
            ROLE,
            id="session-role-is-prefix-of-role",
        ),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/s",
            f"arn:aws:iam::{ACCOUNT}:role/service",
            id="role-is-suffix-of-session-role",
        ),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/s",
            f"arn:aws:iam::{ACCOUNT}:role/billing-service/extra",
            id="role-name-is-a-path-segment",
        ),
        pytest.param(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/team/s",
            f"arn:aws:iam::{ACCOUNT}:role/team/billing-service",
            id="session-role-is-the-path",
        ),
        pytest.param(
            f"arn:aws:iam::{ACCOUNT}:user/billing-service", ROLE, id="user-with-role-name"
        ),
    ],
)
def test_assumed_role_session_does_not_match_other_roles(session: str, role: str) -> None:
    assert not caller_matches(session, role)


def test_session_arn_entry_matches_only_that_session() -> None:
    assert caller_matches(SESSION, SESSION)
    assert not caller_matches(f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/other-session", SESSION)


# --- malformed entries --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("", id="empty"),
        pytest.param("*", id="star"),
        pytest.param("arn:aws:iam::*:role/billing-service", id="wildcard-account"),
        pytest.param(f"arn:aws:iam::{ACCOUNT}:role/*", id="wildcard-role"),
        pytest.param(f"arn:aws:iam::{ACCOUNT}:role/billing-*", id="wildcard-suffix"),
        pytest.param(f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/*", id="wildcard-session"),
        pytest.param(f"arn:aws:iam::{ACCOUNT}:role/", id="no-role-name"),
        pytest.param(f"arn:aws:iam::{ACCOUNT}:role", id="no-role"),
        pytest.param(f"arn:aws:iam::{ACCOUNT}:", id="no-resource"),
        pytest.param("billing-service", id="bare-role-name"),
        pytest.param(f"arn:aws:iam:{ACCOUNT}:role/billing-service", id="missing-colon"),
        pytest.param(f"arn:aws:iam::{ACCOUNT[:-1]}:role/billing-service", id="short-account"),
        pytest.param(f"arn:azure:iam::{ACCOUNT}:role/billing-service", id="unknown-partition"),
        pytest.param(f" {ROLE}", id="leading-space"),
        pytest.param(f"{ROLE} ", id="trailing-space"),
        pytest.param(f"{ROLE}\n", id="trailing-newline"),
        pytest.param(ROLE.upper(), id="uppercased"),
    ],
)
def test_malformed_entries_match_nothing(entry: str) -> None:
    for caller in (SESSION, USER, ROLE, f"arn:aws:iam::{ACCOUNT}:root"):
        assert not caller_matches(caller, entry)


def test_malformed_caller_matches_nothing_even_itself() -> None:
    assert not caller_matches("not-an-arn", "not-an-arn")
    assert not caller_matches("", "")


# --- authorize ----------------------------------------------------------------------------------------------


def test_authorized_caller_and_scopes_pass() -> None:
    authorize(SESSION, [ROLE], SCOPES, ALLOWED_SCOPES)
    authorize(SESSION, ["arn:aws:iam::999999999999:role/x", ACCOUNT], SCOPES[:1], ALLOWED_SCOPES)
    authorize(USER, (USER,), SCOPES, ALLOWED_SCOPES)


def test_any_matching_entry_is_enough() -> None:
    authorize(SESSION, ["garbage", f"arn:aws:iam::{OTHER_ACCOUNT}:role/billing-service", ROLE], SCOPES,
              ALLOWED_SCOPES)


def assert_access_denied(error: VendingError) -> None:
    assert isinstance(error, AccessDenied)
    assert error.status == 403
    assert error.code == "access_denied"


@pytest.mark.parametrize("caller", [None, ""])
def test_no_caller_identity_is_access_denied(caller: str | None) -> None:
    with pytest.raises(AccessDenied) as caught:
        authorize(caller, [ROLE, ACCOUNT], SCOPES, ALLOWED_SCOPES)
    assert_access_denied(caught.value)


@pytest.mark.parametrize("allowed", [[], (), iter(())], ids=["list", "tuple", "iterator"])
def test_empty_caller_list_allows_nobody(allowed: Iterable[str]) -> None:
    with pytest.raises(AccessDenied) as caught:
        authorize(SESSION, allowed, SCOPES, ALLOWED_SCOPES)
    assert_access_denied(caught.value)


def test_caller_not_in_list_is_access_denied() -> None:
    with pytest.raises(AccessDenied) as caught:
        authorize(f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/billing-service/s", [ROLE, ACCOUNT], SCOPES,
                  ALLOWED_SCOPES)
    assert_access_denied(caught.value)


def test_caller_is_checked_before_scopes() -> None:
    # A caller who is not allowed learns nothing about which scopes the app allows.
    with pytest.raises(AccessDenied) as caught:
        authorize(f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/x/s", [ROLE], ["cx.not-allowed"], ALLOWED_SCOPES)
    assert_access_denied(caught.value)


def test_no_caller_is_checked_before_scopes() -> None:
    with pytest.raises(AccessDenied):
        authorize(None, [ROLE], ["cx.not-allowed"], frozenset())


@pytest.mark.parametrize(
    "scopes",
    [
        ["cx.admin"],
        ["cx.agent-calls", "cx.admin"],
        ["cx.agent-calls", "cx.queue-calls", "cx.admin"],
        ["cx.agent-call"],  # a prefix of an allowed scope
        ["cx.agent-calls2"],
        ["CX.AGENT-CALLS"],
    ],
)
def test_any_scope_outside_the_allowed_set_is_invalid_scope(scopes: list[str]) -> None:
    with pytest.raises(InvalidScope) as caught:
        authorize(SESSION, [ROLE], scopes, ALLOWED_SCOPES)
    assert caught.value.status == 403
    assert caught.value.code == "invalid_scope"


def test_empty_allowed_scopes_allow_no_scope() -> None:
    with pytest.raises(InvalidScope):
        authorize(SESSION, [ROLE], ["cx.agent-calls"], frozenset())


def test_invalid_scope_is_not_access_denied() -> None:
    # The two 403s are told apart by their error code.
    with pytest.raises(VendingError) as caught:
        authorize(SESSION, [ROLE], ["cx.admin"], ALLOWED_SCOPES)
    assert not isinstance(caught.value, AccessDenied)


@pytest.mark.parametrize("path", ["team#1", "dept~a", "a!b", "x*y"])
def test_role_with_any_legal_path_character_matches_its_session(path: str) -> None:
    assert caller_matches(SESSION, f"arn:aws:iam::{ACCOUNT}:role/{path}/billing-service")


@pytest.mark.parametrize(("caller", "allowed"), [
    (f"arn:aws:sts::{ACCOUNT}:assumed-role/Billing-Service/s", ROLE),
    (f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/s", f"arn:aws:iam::{ACCOUNT}:role/BILLING-SERVICE"),
    (f"arn:aws:iam::{ACCOUNT}:user/ops/Alice", f"arn:aws:iam::{ACCOUNT}:user/ops/alice"),
])
def test_role_and_user_names_match_ignoring_case_as_iam_compares_them(caller: str, allowed: str) -> None:
    assert caller_matches(caller, allowed)


def test_a_holder_is_the_same_whichever_case_the_name_arrives_in() -> None:
    holders = {Caller.parse(f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/s").holder
               for name in ("billing-service", "Billing-Service", "BILLING-SERVICE")}
    users = {Caller.parse(f"arn:aws:iam::{ACCOUNT}:user/ops/{name}").holder for name in ("alice", "Alice")}
    assert len(holders) == 1 and len(users) == 1


def test_the_federated_users_of_an_account_share_one_budget_holder_and_keep_their_own_tokens() -> None:
    alice, bob = (Caller.parse(f"arn:aws:sts::{ACCOUNT}:federated-user/{name}") for name in ("alice", "bob"))
    role = Caller.parse(f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/s")

    assert alice.holder != bob.holder  # a token per name
    assert alice.budget_holder == bob.budget_holder == f"arn:aws:sts::{ACCOUNT}:federated-user"
    assert role.budget_holder == role.holder  # a role's sessions already share their role's
    assert CallerPolicy.parse([ACCOUNT]).admits(alice)  # an account entry admits its federated users


# --- holders: whose token a caller is given ---------------------------------------------------------------

ROLE_HOLDER = f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service"


def test_every_session_of_a_role_holds_the_roles_tokens_and_any_other_caller_its_own() -> None:
    sessions = [SESSION, f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/i-0123456789abcdef0"]
    others = [f"arn:aws:sts::{ACCOUNT}:assumed-role/payroll-service/billing-session",
              f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/billing-service/billing-session",
              f"arn:aws-cn:sts::{ACCOUNT}:assumed-role/billing-service/billing-session"]

    assert {Caller.parse(session).holder for session in sessions} == {ROLE_HOLDER}
    assert len({Caller.parse(other).holder for other in others} | {ROLE_HOLDER}) == len(others) + 1
    assert Caller.parse(USER).holder == USER
    assert Caller.parse("not-an-arn").holder == "not-an-arn"  # matches no policy entry, holds nothing shared


@pytest.mark.parametrize("target", [ROLE, f"arn:aws:iam::{ACCOUNT}:role/team/billing-service", SESSION])
def test_a_scheduled_target_named_by_its_role_or_a_session_mints_what_the_roles_sessions_are_given(
        target: str) -> None:
    assert policy.target_holder(target) == ROLE_HOLDER


def test_a_scheduled_target_of_another_principal_mints_its_own() -> None:
    assert policy.target_holder(USER) == USER


@pytest.mark.parametrize(("allowed", "holder", "admitted"), [
    pytest.param([ACCOUNT], ROLE_HOLDER, True, id="account"),
    pytest.param([ROLE], ROLE_HOLDER, True, id="role"),
    pytest.param([SESSION], ROLE_HOLDER, True, id="one-of-its-sessions"),
    pytest.param([USER], USER, True, id="user"),
    pytest.param([ROLE], "", True, id="any-holder-of-a-shared-token"),
    pytest.param([f"arn:aws:iam::{ACCOUNT}:role/payroll-service"], ROLE_HOLDER, False, id="another-role"),
    pytest.param([OTHER_ACCOUNT], ROLE_HOLDER, False, id="another-account"),
    pytest.param([USER], ROLE_HOLDER, False, id="a-user-is-not-the-role"),
    pytest.param([], "", False, id="nobody-allowed"),
])
def test_the_schedule_serves_a_holder_only_while_some_caller_of_it_would_be_admitted(
        allowed: list[str], holder: str, admitted: bool) -> None:
    assert CallerPolicy.parse(allowed).admits_holder(holder) is admitted
