"""README.md and docs/*.md show no operator command (make apps / smoke / tokens, python -m tools.*) that the tests do
not run (or, for the few that need a real account, list as such): tests/integration/operator_commands.py holds them."""

from __future__ import annotations

import re

from tests.documents import documents
from tests.integration.operator_commands import AWS_FLOW, AWS_ONLY, CALLER_BUDGET_FLOW, LOCAL_FLOW, MODE_SWITCH_FLOW

OPERATOR_COMMAND = re.compile(r"\bmake (?:apps|smoke|tokens)\b|-m tools\.")


def normalized(command: str) -> str:
    return " ".join(command.split())


def code_lines(markdown: str) -> list[str]:
    """Shell commands in fenced blocks and indented code, continuation lines joined, trailing comments dropped."""
    commands: list[str] = []
    fenced = continued = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced, continued = not fenced, False
            continue
        if not (fenced or line.startswith("    ") or continued):
            continue
        text = re.sub(r"\s{2,}#.*$", "", line).strip()  # "make tokens LOCAL=1   # a comment"
        if continued:
            commands[-1] += " " + text.rstrip("\\").strip()
        else:
            commands.append(text.rstrip("\\").strip())
        continued = text.endswith("\\")
    return commands


def test_code_lines_joins_continuations_and_drops_comments() -> None:
    markdown = ("Text `make tokens` in prose.\n\n```sh\nmake tokens STACK=x \\\n  APP=y   # why\n```\n\n"
                "    make demo  # z\n")

    assert code_lines(markdown) == ["make tokens STACK=x APP=y", "make demo"]


def test_every_operator_command_in_the_readme_and_docs_is_one_the_tests_run() -> None:
    documented = {normalized(command)
                  for command in [*LOCAL_FLOW, *AWS_FLOW, *AWS_ONLY, *MODE_SWITCH_FLOW, *CALLER_BUDGET_FLOW]}

    shown = [(name, normalized(command)) for name, text in documents().items()
             for command in code_lines(text) if OPERATOR_COMMAND.search(command)]

    assert shown
    assert [f"{name}: {command}" for name, command in shown if command not in documented] == []
