"""A small reader of the Logs Insights commands the saved queries use (filter, fields, stats ... by, sort),
applied to the JSON log lines a local run wrote: what lets a test hold that each saved query finds what it
should in real log lines, since Logs Insights cannot run here. It understands only what the queries use."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

COMPARISON = re.compile(r'^(ispresent\((\w+)\)|(@?\w+) (=|!=) "([^"]*)"|(@?\w+) in \[([^\]]*)\])$')
GROUP = re.compile(r"bin\(\w+\) as (\w+)|(\w+)")


def fields_read(query: str) -> set[str]:
    """The fields a query filters or groups on (not those it only counts or shows)."""
    read: set[str] = set()
    for command in commands(query):
        verb, _, rest = command.partition(" ")
        if verb == "filter":
            read |= {term for clause in rest.split(" and ") for term in _clause_fields(clause)}
        elif verb == "stats":
            _, _, by = rest.partition(" by ")
            read |= {name.strip() for name in by.split(",") if not name.strip().startswith("bin(")}
    return read


def run(query: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a query answers over these records, for the commands it uses."""
    rows: list[dict[str, Any]] = list(records)
    for command in commands(query):
        verb, _, rest = command.partition(" ")
        if verb == "filter":
            rows = [row for row in rows if all(_holds(clause, row) for clause in rest.split(" and "))]
        elif verb == "stats":
            rows = _stats(rest, rows)
    return rows


def commands(query: str) -> list[str]:
    return [line.strip().removeprefix("| ").strip() for line in query.splitlines() if line.strip()]


def _clause_fields(clause: str) -> list[str]:
    match = COMPARISON.match(clause.strip())
    assert match, f"not understood: {clause}"
    return [name for name in (match[2], match[3], match[6]) if name]


def _holds(clause: str, row: dict[str, Any]) -> bool:
    match = COMPARISON.match(clause.strip())
    assert match, f"not understood: {clause}"
    if match[2]:
        return row.get(match[2]) is not None
    if match[3]:
        equal = str(row.get(match[3])) == match[5]
        return equal if match[4] == "=" else row.get(match[3]) is not None and not equal
    return str(row.get(match[6])) in [item.strip().strip('"') for item in match[7].split(",")]


def _stats(rest: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    aggregates, _, by = rest.partition(" by ")
    counted = re.search(r"count\(\*\) as (\w+)", aggregates)
    assert counted, f"no count in: {aggregates}"
    keys = [name.strip() for name in by.split(",") if not name.strip().startswith("bin(")]
    groups = Counter(tuple(row.get(key) for key in keys) for row in rows)
    return [{**dict(zip(keys, group, strict=True)), counted[1]: count} for group, count in groups.most_common()]
