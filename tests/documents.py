"""The documentation the tests hold to its word: README.md and every page under docs/, and the fenced blocks in them.

Shell blocks carry a marker comment on the line before them (`<!-- readme: runs offline -->`, `needs AWS`,
`needs Docker`), whichever file they are in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- readme: (?P<marker>[^>]*) -->\n)?```(?P<language>\w*)\n(?P<body>.*?)```", re.S)


class Block(NamedTuple):
    document: str  # the file, relative to the repository: README.md, docs/operations.md, ...
    marker: str | None
    body: str


def documents() -> dict[str, str]:
    """README.md first, then docs/*.md in name order: path relative to the repository -> text."""
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {path.relative_to(ROOT).as_posix(): path.read_text() for path in paths}


def blocks(language: str) -> list[Block]:
    """Every fenced block of that language (`sh`, `python`, `json`, or "" for unlabelled) in every document."""
    return [Block(name, match["marker"], match["body"])
            for name, text in documents().items() for match in BLOCK.finditer(text) if match["language"] == language]
