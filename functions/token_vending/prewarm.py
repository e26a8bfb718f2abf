"""The scheduled run: refresh cached tokens ahead of expiry and mint the listed ones.

EventBridge invokes the function (template.yaml, event `Prewarm`) with either
the bare scheduled event or the rule's Input `{"prewarm": [{"app", "scope",
"caller"}, ...]}`.

1. Read the metadata of every cached token (never the token itself), and each
   app's configuration once per run, fresh from Secrets Manager so a rotation
   is seen. Entries no longer served (`not_served`: of a removed app, of older
   (rotated) credentials, of a token mode the app no longer uses, of a holder
   no `allowed_callers` entry admits or a scope set `allowed_scopes` no longer
   holds) are *stale*: left to DynamoDB's TTL, and not counted as work (not
   skipped, not failed, no metric), since they are a state of the table, not
   something a run could do; the run's summary lists how many there are by
   reason (`stale`), and `make tokens` marks each one.
2. Refresh, soonest expiry first, every served entry with less than its refresh
   threshold left (see `refresh_threshold`: REFRESH_BEFORE_SECONDS with a
   per-key jitter); the others are skipped (`fresh`, or `renewal_blocked`).
3. Mint each listed token that is not cached yet, for the holder of the
   entry's `caller` (a role ARN stands for its sessions). A listed entry that
   can never be served fails, so PrewarmFailuresAlarm fires: a malformed one
   (`bad_entry`), an unknown app (`unknown_app`), no caller for an app with a
   token per caller (`no_caller`), a caller the app does not admit
   (`caller_not_admitted`), a scope set it does not allow (`scope_not_allowed`).

Every fetch goes through `TokenSource.token_for`, under the vend's
single-flight lease, so a pre-warm and a vend never both call the token
endpoint for one key. That, and the table being re-read under the lease, make
a run safe to repeat (Lambda retries failed asynchronous invocations and may
deliver an event twice): a second run finds the work done and skips it
(`done_elsewhere`).

A token the endpoint gave back unchanged ("renewed only once expired") is
stored with `renewal_blocked`; later runs skip it until it has expired
instead of asking again every hour.

Every fetch counts against the app's mint budget for the hour (the run is no
caller: no caller's budget is spent); an entry the budget cannot cover is
skipped (reason `mint_limit_reached`) and a later run takes it, as is one the
run has no time left for (`out_of_time`).

Each fetch the run asks for writes one audit record (a JSON log line, like a
vend's, never the token): `audit`, `caller` and `charged_to` "schedule", `app`,
`scope`, `holder` ("" for a shared token), `outcome` ("ok" or the error code),
and, when the endpoint issued a token, `source` "upstream" and its `fingerprint`.

One failing entry does not stop the rest. The run returns its counts
{refreshed, minted, skipped, failed} with the reasons ("skipped:fresh", ...)
and the stale entries by reason, logs them, and emits the counts as metrics
(PrewarmFailed raises an alarm), with the soonest expiry left.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from .app_config import AppConfig, TokenSharing
from .errors import (
    ConfigurationError,
    Dependency,
    InvalidRequest,
    InvalidScope,
    MintLimitReached,
    StoreUnavailable,
    UnknownApp,
    VendingError,
)
from .observability import logger, record_degraded, record_prewarm, tracer
from .policy import ANY_ARN, target_holder
from .request_input import TokenRequest, parse_token_request
from .token_store import StoredToken
from .tokens import CachedToken, TokenKey
from .vending import TokenOrder

if TYPE_CHECKING:
    from .container import Container

# A key is refreshed once it has less than REFRESH_BEFORE_SECONDS left, or up to
# JITTER_SHARE of that earlier; where in that margin is fixed per key.
JITTER_SHARE = 0.1
# Start no new fetch with less than this left before the Lambda timeout: one
# fetch may take a lease wait or the endpoint's retries (about 10 s).
TIME_RESERVE_SECONDS = 12.0


class PrewarmAborted(Exception):
    """The run could do nothing (the token table is unreadable): fail it, so Lambda retries and then
    sends the event to the dead-letter queue."""


def refresh_threshold(key: TokenKey, refresh_before_seconds: float) -> float:
    """Seconds left below which the key's token is refreshed.

    Jitter by a deterministic per-key offset, not by chance per run: tokens
    minted together (same expiry) get thresholds spread evenly over a margin
    above REFRESH_BEFORE_SECONDS (with the default 7 days, 16.8 hours of hourly
    runs), so runs refresh a few at a time; and because the threshold is fixed
    for a key, a repeated or retried run makes the same decision. A random draw
    per run would do neither reliably. The margin is above, never below, so
    every token with less than REFRESH_BEFORE_SECONDS left is refreshed.
    """
    digest = hashlib.sha256(key.table_key.encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return refresh_before_seconds * (1 + JITTER_SHARE * fraction)


class Target(NamedTuple):
    """A listed token: the request, and for an app with a token per caller, the caller it is for."""

    request: TokenRequest
    caller: str | None  # an IAM ARN (a role's stands for its sessions); None: the app's shared token


def parse_prewarm_list(raw: object) -> tuple[list[Target], list[str]]:
    """The listed tokens (validated like API input, duplicates dropped) and a problem per bad entry."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], ["prewarm must be a list of {\"app\": ..., \"scope\": ..., \"caller\": ...} objects"]
    targets: dict[Target, None] = {}  # in order, without duplicates
    problems: list[str] = []
    for index, entry in enumerate(raw):
        parsed = _target(entry)
        if isinstance(parsed, Target):
            targets[parsed] = None
        else:
            problems.append(f"entry {index}: {parsed}")
    return list(targets), problems


def _target(entry: object) -> Target | str:
    """One listed token, or what is wrong with it."""
    if not isinstance(entry, dict):
        return "not an object"
    app, scope, caller = entry.get("app"), entry.get("scope"), entry.get("caller")
    scopes = [scope] if isinstance(scope, str) else scope
    if not isinstance(app, str) or not isinstance(scopes, list) or not all(isinstance(value, str) for value in scopes):
        return "app and scope must be strings"
    if caller is not None and not (isinstance(caller, str) and ANY_ARN.fullmatch(caller)):
        return "caller must be an IAM ARN (a role's, a user's or an assumed-role session's)"
    try:
        return Target(parse_token_request(app, scopes), caller)
    except InvalidRequest as error:
        return error.description


class Stale(StrEnum):
    """Why a cached entry is no longer served under its app's current configuration (it is left to expire)."""

    UNREADABLE = "unreadable"  # its app or scope is not one the API accepts (an edited item)
    APP_REMOVED = "app_removed"  # the app has no secret (any more)
    ROTATED_CREDENTIALS = "rotated_credentials"  # minted with credentials (or an endpoint) the app no longer uses
    NOW_SHARED = "now_shared"  # a holder's own token, of an app that now shares its tokens
    NOW_PER_CALLER = "now_per_caller"  # a shared token, of an app that now gives each caller its own
    CALLER_NOT_ADMITTED = "caller_not_admitted"  # no allowed_callers entry admits its holder any more
    SCOPE_NOT_ALLOWED = "scope_not_allowed"  # its scope set is no longer within allowed_scopes


def not_served(config: AppConfig | None, entry: StoredToken) -> Stale | None:
    """Why a cached entry is not served any more under its app's configuration (None: the app has no secret),
    or None when it is served. The scheduled run and `make tokens` both decide with this."""
    try:
        request = parse_token_request(entry.app, [entry.scope])
    except InvalidRequest:
        return Stale.UNREADABLE
    if config is None:
        return Stale.APP_REMOVED
    if entry.credential_id != config.credential_id:
        return Stale.ROTATED_CREDENTIALS
    if config.tokens is TokenSharing.SHARED and entry.holder:
        return Stale.NOW_SHARED
    if config.tokens is TokenSharing.PER_CALLER and not entry.holder:
        return Stale.NOW_PER_CALLER
    return _refused(config, entry.holder, request.scopes)


def _refused(config: AppConfig, holder: str, scopes: tuple[str, ...]) -> Stale | None:
    """Why no caller of this holder could be vended these scopes under the app's policy, or None."""
    refusal = config.refusal(holder, scopes)
    if refusal is None:
        return None
    return Stale.SCOPE_NOT_ALLOWED if isinstance(refusal, InvalidScope) else Stale.CALLER_NOT_ADMITTED


@dataclass
class Summary:
    refreshed: int = 0
    minted: int = 0
    skipped: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # why skipped or failed: "skipped:fresh", ...
    stale: Counter[str] = field(default_factory=Counter)  # entries no longer served, by why: not counted as work

    def count(self, outcome: str, reason: str | None = None) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        if reason:
            self.reasons[f"{outcome}:{reason}"] += 1

    def counts(self) -> dict[str, int]:
        return {"refreshed": self.refreshed, "minted": self.minted, "skipped": self.skipped, "failed": self.failed}

    def answer(self) -> dict[str, Any]:
        """What the run returns (what `make invoke` prints): the counts, the reasons, the stale entries."""
        return {**self.counts(), "reasons": dict(sorted(self.reasons.items())),
                "stale": dict(sorted(self.stale.items()))}


@tracer.capture_method(capture_response=False)
def run(event: Mapping[str, Any], container: Container,
        time_left_ms: Callable[[], int] | None = None) -> dict[str, Any]:
    """One scheduled run; returns {refreshed, minted, skipped, failed, reasons, stale}."""
    return _Run(container, time_left_ms).execute(event.get("prewarm"))


class _Run:
    def __init__(self, container: Container, time_left_ms: Callable[[], int] | None) -> None:
        self._container = container
        # A run starts with the function's whole timeout; a clock that says otherwise
        # (a test's stand-in context) cannot be planned against, so it is not used.
        if time_left_ms is not None and time_left_ms() < TIME_RESERVE_SECONDS * 1000:
            time_left_ms = None
        self._time_left_ms = time_left_ms
        self._summary = Summary()
        self._configs: dict[str, AppConfig | VendingError] = {}
        self._expiries: dict[TokenKey, float] = {}  # current-credential keys and when their tokens end

    def execute(self, listed_raw: object) -> dict[str, Any]:
        listed, problems = parse_prewarm_list(listed_raw)
        for problem in problems:
            logger.warning("pre-warm entry can never be served", extra={"problem": problem})
            self._summary.count("failed", "bad_entry")
        try:
            entries = list(self._container.store.entries())
        except StoreUnavailable as error:
            record_degraded(Dependency.DYNAMODB)
            self._summary.count("failed", "table_unreadable")
            self._finish()
            raise PrewarmAborted(f"the token table cannot be read ({error})") from None
        for entry in sorted(entries, key=lambda cached: cached.expires_at):
            self._refresh(entry)
        for target in listed:
            self._mint(target)
        return self._finish()

    def _finish(self) -> dict[str, Any]:
        answer = self._summary.answer()
        soonest = min(self._expiries.values(), default=None)
        soonest_left = None if soonest is None else soonest - self._container.clock.now()
        record_prewarm(self._summary.counts(), soonest_left, len(self._expiries))
        logger.info("pre-warm run", extra={"summary": self._summary.counts(), "reasons": answer["reasons"],
                                           "stale": answer["stale"], "cached_tokens": len(self._expiries),
                                           "soonest_expiry_seconds": None if soonest_left is None
                                           else int(soonest_left)})
        return answer

    def _refresh(self, entry: StoredToken) -> None:
        try:
            request = parse_token_request(entry.app, [entry.scope])
        except InvalidRequest:
            self._summary.stale[Stale.UNREADABLE] += 1
            return
        config = self._config(request.app)
        if isinstance(config, VendingError) and not isinstance(config, UnknownApp):
            self._summary.count("failed", config.code)  # its configuration cannot be read: nothing is known
            return
        served = config if isinstance(config, AppConfig) else None
        stale = not_served(served, entry)
        if stale or served is None:
            self._summary.stale[stale or Stale.APP_REMOVED] += 1  # let it expire: DynamoDB's TTL removes it
            return
        key = TokenKey(request.app, request.scope, served.credential_id, entry.holder)
        self._expiries[key] = entry.expires_at
        left = entry.expires_at - self._container.clock.now()
        if entry.renewal_blocked and left > 0:
            self._summary.count("skipped", "renewal_blocked")
            return
        threshold = refresh_threshold(key, self._container.settings.refresh_before_seconds)
        if left > threshold:
            self._summary.count("skipped", "fresh")
            return
        self._fetch(served, TokenOrder(request, entry.holder), key, "refreshed", min_ttl=threshold)

    def _mint(self, target: Target) -> None:
        request = target.request
        config = self._config(request.app)
        if isinstance(config, UnknownApp):
            _never_served(self._summary, target, config.code, config.description)
            return
        if isinstance(config, VendingError):
            self._summary.count("failed", config.code)  # logged where it was read
            return
        holder = _holder_of(config, target)
        if holder is None:
            _never_served(self._summary, target, "no_caller",
                          "the app gives each caller its own token: name the caller")
            return
        key = TokenKey(request.app, request.scope, config.credential_id, holder)
        if key in self._expiries:
            return  # cached: the refresh pass has looked after it
        refused = _refused(config, holder, request.scopes)
        if refused:
            _never_served(self._summary, target, refused.value,
                          f"no caller of {holder or 'the app'} may have this token")
            return
        self._fetch(config, TokenOrder(request, holder), key, "minted", min_ttl=None)

    def _fetch(self, config: AppConfig, order: TokenOrder, key: TokenKey, outcome: str,
               min_ttl: float | None) -> None:
        """Get a token through the vend's path (lease included), audit the mint, and count what happened."""
        if self._out_of_time():
            self._summary.count("skipped", "out_of_time")  # still due: the next run takes it
            return
        minted: CachedToken | None = None
        try:
            vended = self._container.source.token_for(config, order, min_ttl=min_ttl, use_memory=False)
            if vended.source == "upstream":
                minted = vended.token
                if not vended.stored:
                    # Fetched, but DynamoDB or KMS failed: a pre-warm that warmed only its memory has not done its job.
                    raise StoreUnavailable("the new token was not stored")
        except MintLimitReached as refused:
            _audit(order, refused.code, audited=refused.audited)
            self._summary.count("skipped", "mint_limit_reached")  # still due: a later run takes it
            return
        except (VendingError, StoreUnavailable) as error:
            reason = error.code if isinstance(error, VendingError) else "store_unavailable"
            _audit(order, reason, minted, error.audited if isinstance(error, VendingError) else None)
            self._summary.count("failed", reason)
            return
        except Exception:  # one entry's surprise must not stop the rest of the run
            logger.exception("pre-warm fetch failed", extra={"app": order.request.app, "scope": order.request.scope})
            _audit(order, "internal_error")
            self._summary.count("failed", "internal_error")
            return
        token = vended.token
        self._expiries[key] = token.expires_at
        if minted is None:
            self._summary.count("skipped", "done_elsewhere")  # a vend or another run got there first
            return
        _audit(order, "ok", minted)
        if token.renewal_blocked:
            self._summary.count("skipped", "renewal_blocked")  # same token back; remembered in the table
        else:
            self._summary.count(outcome)

    def _config(self, app: str) -> AppConfig | VendingError:
        """The app's configuration, read once per run past the memory cache (rotations are seen)."""
        if app not in self._configs:
            try:
                self._configs[app] = self._container.configs.get(app, force_fetch=True)
            except VendingError as error:
                if not isinstance(error, UnknownApp):
                    problem = error.detail if isinstance(error, ConfigurationError) else error.description
                    logger.warning("pre-warm cannot read the app's configuration",
                                   extra={"app": app, "reason": error.code, "problem": problem})
                self._configs[app] = error
        return self._configs[app]

    def _out_of_time(self) -> bool:
        return self._time_left_ms is not None and self._time_left_ms() < TIME_RESERVE_SECONDS * 1000


def _never_served(summary: Summary, target: Target, reason: str, problem: str) -> None:
    """A listed entry that no run can mint (its app's configuration does not let it): failed, so the alarm says
    the list needs fixing, rather than a skip nobody sees."""
    logger.warning("pre-warm entry can never be served", extra={
        "app": target.request.app, "scope": target.request.scope, "caller": target.caller, "reason": reason,
        "problem": problem})
    summary.count("failed", reason)


SCHEDULE = "schedule"  # the scheduled run, as an audit record's caller and payer


def _audit(order: TokenOrder, outcome: str, minted: CachedToken | None = None,
           audited: Mapping[str, str] | None = None) -> None:
    """The audit record of one mint the run asked for: `outcome` "ok" or the error code; with `source` "upstream"
    and the `fingerprint` when the endpoint issued a token. A log line of its own (a vend's travels in the
    invocation's EMF line); never the token."""
    record: dict[str, Any] = {"audit": SCHEDULE, "caller": SCHEDULE, "charged_to": SCHEDULE,
                              "app": order.request.app, "scope": order.request.scope, "holder": order.holder,
                              "outcome": outcome, **(audited or {})}
    if minted is not None:
        record.update(source="upstream", fingerprint=minted.fingerprint)
    if outcome == "ok":
        logger.info("pre-warm minted a token", extra=record)
    else:
        logger.warning("pre-warm fetch failed", extra=record)


def _holder_of(config: AppConfig, target: Target) -> str | None:
    """Whose token a listed one is: "" for an app that shares its tokens; None when the app gives each
    caller its own and the entry names none."""
    if config.tokens is TokenSharing.SHARED:
        return ""
    return target_holder(target.caller) if target.caller else None
