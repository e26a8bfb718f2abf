"""README.md stays short enough to finish, and it and the pages under docs/ hold together: every relative link
reaches a file and a heading that exist, every page says first what it covers, and no table or figure is
kept in two documents (one copy goes stale)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import PurePosixPath

from tests.documents import ROOT, documents

README_MAX_LINES = 350
FENCED = re.compile(r"^```.*?^```", re.S | re.M)
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INDENTED_FIGURE = re.compile(r"(?:\A|\n\n)((?: {4}\S.*\n)+)")
TABLE_SEPARATOR = re.compile(r"^\|[\s:|-]+\|$")


def prose(markdown: str) -> str:
    """The text outside fenced blocks, where headings and links are (a `# comment` in a shell block is neither)."""
    return FENCED.sub("", markdown)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks, colons, commas...) dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = defaultdict(int)
    found = set()
    for heading in HEADING.findall(prose(markdown)):
        slug = anchor(heading)
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)  # GitHub numbers a repeated heading's anchor
        seen[slug] += 1
    return found


def broken_links(name: str, markdown: str) -> list[str]:
    texts = documents()
    broken = []
    for target in LINK.findall(prose(markdown)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check offline
            continue
        path, _, fragment = target.partition("#")
        resolved = str(PurePosixPath(name).parent / path) if path else name
        resolved = str(PurePosixPath(*_normalized(resolved)))
        if not (ROOT / resolved).exists():
            broken.append(f"{name}: {target} (no file {resolved})")
        elif fragment and fragment not in anchors(markdown if resolved == name else
                                                  texts.get(resolved) or (ROOT / resolved).read_text()):
            broken.append(f"{name}: {target} (no heading #{fragment} in {resolved})")
    return broken


def _normalized(path: str) -> list[str]:
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return parts


def test_anchor_follows_githubs_rules() -> None:
    assert anchor("Who got which token") == "who-got-which-token"
    assert anchor("`sam local invoke`") == "sam-local-invoke"
    assert anchor("Performance: how `make bench` measures, and what moved") == (
        "performance-how-make-bench-measures-and-what-moved")
    assert anchors("# A\n\n```sh\n# not a heading\n```\n\n## A\n") == {"a", "a-1"}


def test_the_readme_is_short_enough_to_finish() -> None:
    lines = len(documents()["README.md"].splitlines())

    assert lines <= README_MAX_LINES


def test_the_readme_links_to_every_page_under_docs() -> None:
    texts = documents()
    linked = {PurePosixPath(target.partition("#")[0]).name for target in LINK.findall(prose(texts["README.md"]))
              if target.startswith("docs/")}

    assert {PurePosixPath(name).name for name in texts if name.startswith("docs/")} <= linked


def test_every_relative_link_reaches_a_file_and_heading_that_exist() -> None:
    assert [problem for name, text in documents().items() for problem in broken_links(name, text)] == []


def test_a_broken_link_or_anchor_is_found() -> None:
    markdown = "[a](docs/operations.md#no-such-heading) [b](docs/nothing.md) [c](#nowhere) [d](https://example.com)"

    assert broken_links("README.md", markdown) == [
        "README.md: docs/operations.md#no-such-heading (no heading #no-such-heading in docs/operations.md)",
        "README.md: docs/nothing.md (no file docs/nothing.md)",
        "README.md: #nowhere (no heading #nowhere in README.md)",
    ]


def test_every_page_under_docs_opens_with_a_paragraph_saying_what_it_covers() -> None:
    openings = {name: text.split("\n\n")[:2] for name, text in documents().items() if name.startswith("docs/")}

    assert openings
    for name, (title, paragraph) in openings.items():
        assert title.startswith("# ") and "\n" not in title, name
        assert paragraph[0].isalpha() and not paragraph.startswith(("|", "    ")), name


def test_no_table_row_or_figure_is_kept_in_two_documents() -> None:
    kept_in: dict[str, set[str]] = defaultdict(set)
    for name, text in documents().items():
        outside_code = prose(text)
        rows = [line for line in outside_code.splitlines() if line.startswith("|") and not TABLE_SEPARATOR.match(line)]
        for piece in [*rows, *INDENTED_FIGURE.findall(outside_code)]:
            kept_in[" ".join(piece.split())].add(name)

    assert {piece: sorted(names) for piece, names in kept_in.items() if len(names) > 1} == {}
