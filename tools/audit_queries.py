"""Who got which token: CloudWatch Logs Insights queries over the function's audit log.

The function writes one JSON line per answer of the vend (GET) and report (DELETE)
routes: `audit` ("vend" | "report"), `caller` (IAM ARN, or null), `app`, `scope`,
`outcome` ("ok" or the error code), `status`, `holder` (whose token: the caller's
role for a session, else its ARN; empty when the app shares its tokens; on answers
after authorization), `budget` (on mint_limit_reached: "app" or "caller"),
`fingerprint` (when a token was involved), `source` (memory | table | upstream, for
ok vends), `charged_to` (whose hourly budget an answer spent: on a vend that minted, the
caller's budget holder, or the reporter's when `prepaid`; on a report that dropped the
token, the reporter's), `budget_holder` (on mint_limit_reached: the holder whose budget is
spent, "" for the app's) and `correlation_id` (API Gateway's request id). The scheduled run writes one record per mint
it asks for (`audit` "schedule", `caller` and `charged_to` "schedule", `holder`, `source`).
There is one warning line with `upstream_failure` (the kind) and `app` for every failed
request to the token endpoint, and one "mint limit reached for this hour" (`app`, `budget`,
`holder`, `limit`) when a container first finds a budget spent. Logs Insights finds JSON
fields by name.

A token belongs to a holder, so what was vended is counted per holder; who asked (a refusal,
one request's history) is named by its caller.

QUERIES are saved in the stack as query definitions (template.yaml); `make tokens
--callers` builds callers_query() for the tokens it lists and runs it (run_query).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from token_vending.request_input import FINGERPRINT

FINGERPRINT_PLACEHOLDER = "FINGERPRINT"  # in the saved query: replace with the 16 hex characters of a vend answer
NO_IDENTITY = "(no IAM identity)"

QUERIES: dict[str, str] = {
    # Who holds tokens of which app: successful vends per holder and app, and how many callers (a role's
    # sessions) and tokens they took. An empty holder: an app's shared tokens.
    "VendsByHolderAndApp": "\n".join([
        'filter audit = "vend" and outcome = "ok"',
        "| stats count(*) as vends, count_distinct(caller) as callers, count_distinct(fingerprint) as tokens, "
        "min(@timestamp) as first_seen, max(@timestamp) as last_seen by holder, app",
        "| sort vends desc",
    ]),
    # Every answer that was not a token (or a 204 report), per caller, app and error code.
    "RefusalsByCallerAndReason": "\n".join([
        'filter audit in ["vend", "report"] and outcome != "ok"',
        f'| fields coalesce(caller, "{NO_IDENTITY}") as who, app, outcome, status',
        "| stats count(*) as refusals, min(@timestamp) as first_seen, max(@timestamp) as last_seen "
        "by who, app, outcome, status",
        "| sort refusals desc",
    ]),
    # Everything logged about one token: minted (pre-warm, for which holder), vended to whom, reported rejected.
    "FingerprintHistory": "\n".join([
        f'filter fingerprint = "{FINGERPRINT_PLACEHOLDER}"',
        "| fields @timestamp, message, audit, outcome, status, caller, holder, app, scope, source, correlation_id",
        "| sort @timestamp asc",
    ]),
    # The budget is gone: who spent it? Mints (upstream token requests that issued a token) per hour, app and
    # the holder whose budget paid: a caller's vends, a reporter's reports (the mints replacing the tokens it
    # dropped), or "schedule" (the pre-warm, which spends the app's budget only).
    "MintsByHolderAndApp": "\n".join([
        'filter source = "upstream" and ispresent(charged_to)',
        "| stats count(*) as mints, min(@timestamp) as first_mint, max(@timestamp) as last_mint "
        "by bin(1h) as hour, app, charged_to",
        "| sort hour desc, mints desc",
    ]),
    # Refusals by a spent budget, per app, budget (app | caller) and the budget's holder: for a caller's budget,
    # the holder that spent it ("" for the app's: MintsByHolderAndApp names who spent that).
    "BudgetRefusals": "\n".join([
        'filter outcome = "mint_limit_reached"',
        "| stats count(*) as refusals, min(@timestamp) as first_seen, max(@timestamp) as last_seen "
        "by app, budget, budget_holder",
        "| sort refusals desc",
    ]),
    # When each budget ran out: the warning a container logs the first time it finds one spent.
    "MintLimitWarnings": "\n".join([
        'filter message = "mint limit reached for this hour"',
        "| stats count(*) as warnings, min(@timestamp) as first_reached by app, budget, holder, limit",
        "| sort first_reached desc",
    ]),
    # Failed requests to Sangoma's token endpoint, per app and kind (unreachable, timeout, http_503, ...).
    "UpstreamFailures": "\n".join([
        "filter ispresent(upstream_failure)",
        "| stats count(*) as failures, min(@timestamp) as first_seen, max(@timestamp) as last_seen "
        "by app, upstream_failure",
        "| sort failures desc",
    ]),
}

MAX_RESULTS = 10_000  # the most rows Logs Insights returns for one query
FINGERPRINTS_PER_QUERY = 200  # keeps a query far below Logs Insights' 10,000-character limit
FINISHED = {"Complete", "Failed", "Cancelled", "Timeout", "Unknown"}
DURATION = re.compile(r"(\d+)([mhdw])")
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def fingerprint_history_query(fingerprint: str) -> str:
    return QUERIES["FingerprintHistory"].replace(FINGERPRINT_PLACEHOLDER, _checked(fingerprint))


def callers_query(fingerprints: Iterable[str]) -> str:
    """Which callers received these tokens: one row per (fingerprint, caller) with counts and first/last vend."""
    listed = ", ".join(f'"{_checked(fingerprint)}"' for fingerprint in fingerprints)
    return "\n".join([
        f'filter audit = "vend" and outcome = "ok" and fingerprint in [{listed}]',
        "| stats count(*) as vends, min(@timestamp) as first_seen, max(@timestamp) as last_seen "
        "by fingerprint, caller",
        f"| limit {MAX_RESULTS}",
    ])


def callers_queries(fingerprints: Sequence[str]) -> list[str]:
    """callers_query for every listed token, a few hundred fingerprints per query: one scan of the log
    group per batch, where a query per fingerprint would scan (and bill) it once per token."""
    unique = list(dict.fromkeys(fingerprints))
    return [callers_query(unique[start:start + FINGERPRINTS_PER_QUERY])
            for start in range(0, len(unique), FINGERPRINTS_PER_QUERY)]


def _checked(fingerprint: str) -> str:
    # Only 16 lowercase hex characters ever reach a query string.
    if not FINGERPRINT.fullmatch(fingerprint):
        raise ValueError("a fingerprint is 16 lowercase hex characters")
    return fingerprint


def parse_since(text: str) -> int:
    """'30m', '12h', '7d', '2w' -> seconds."""
    match = DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError("--since takes a number and a unit: 30m, 12h, 7d, 2w")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def run_query(logs: Any, log_group: str, query: str, start: float, end: float, *,
              sleep: Callable[[float], None] = time.sleep, poll_seconds: float = 1.0,
              max_polls: int = 900) -> list[dict[str, str]]:
    """StartQuery, then GetQueryResults until it is done; rows as {field: value} without @ptr."""
    query_id = logs.start_query(logGroupName=log_group, startTime=int(start), endTime=int(end), queryString=query,
                                limit=MAX_RESULTS)["queryId"]
    for _ in range(max_polls):
        answer = logs.get_query_results(queryId=query_id)
        status = answer.get("status", "Unknown")
        if status == "Complete":
            return [{cell["field"]: cell.get("value", "") for cell in row if cell["field"] != "@ptr"}
                    for row in answer.get("results", [])]
        if status in FINISHED:
            raise QueryFailed(f"the Logs Insights query ended with status {status}")
        sleep(poll_seconds)
    logs.stop_query(queryId=query_id)
    raise QueryFailed(f"the Logs Insights query did not finish in {max_polls * poll_seconds:.0f} s; stopped it")


class QueryFailed(Exception):
    pass


def callers_by_fingerprint(rows: Iterable[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """Rows of callers_query grouped per fingerprint, the most vends first."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault(row.get("fingerprint", "?"), []).append({
            "caller": row.get("caller") or NO_IDENTITY,
            "vends": row.get("vends", "0"),
            "first_seen": row.get("first_seen", "?"),
            "last_seen": row.get("last_seen", "?"),
        })
    for callers in grouped.values():
        callers.sort(key=lambda caller: (-int(caller["vends"] or 0), caller["caller"]))
    return grouped


def format_callers(fingerprints: Sequence[str], rows: Iterable[dict[str, str]], since: str) -> list[str]:
    """One line per (token, caller); a token nobody received in the period says so."""
    grouped = callers_by_fingerprint(rows)
    lines = [f"Callers that received each token in the last {since} (audit log):"]
    table: list[tuple[str, str, str, str, str]] = []
    for fingerprint in dict.fromkeys(fingerprints):
        for caller in grouped.get(fingerprint, []):
            table.append((fingerprint, caller["caller"], caller["vends"], caller["first_seen"], caller["last_seen"]))
        if fingerprint not in grouped:
            table.append((fingerprint, f"(no vend in the last {since})", "", "", ""))
    header = ("FINGERPRINT", "CALLER", "VENDS", "FIRST_SEEN", "LAST_SEEN")
    widths = [max([len(header[i]), *(len(row[i]) for row in table)]) for i in range(len(header))]
    for row in [header, *table]:
        lines.append("  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip())
    return lines
