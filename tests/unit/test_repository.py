"""What the repository says about itself: its license, the packages' license metadata, the changelog."""

from __future__ import annotations

import ast
import hashlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECTS = [ROOT / "pyproject.toml", ROOT / "layers" / "client" / "pyproject.toml"]
# SHA-256 of the Apache License 2.0 as apache.org publishes it (LICENSE-2.0.txt), appendix included.
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_license_is_the_full_apache_2_0_text() -> None:
    text = (ROOT / "LICENSE").read_text()

    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    assert hashlib.sha256(text.encode()).hexdigest() == APACHE_2_0_SHA256


def test_the_client_package_ships_the_same_license_text() -> None:
    # layers/client/LICENSE links to the repository's, so setuptools puts it in the client's wheel.
    assert (ROOT / "layers" / "client" / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()


@pytest.mark.parametrize("pyproject", PYPROJECTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_both_packages_declare_apache_2_0_as_an_spdx_expression(pyproject: Path) -> None:
    config = tomllib.loads(pyproject.read_text())

    assert config["project"]["license"] == "Apache-2.0"
    # A license string (PEP 639) needs setuptools 77 or later to build.
    (setuptools,) = [req for req in config["build-system"]["requires"] if req.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert minimum is not None and int(minimum.group(1)) >= 77


def test_changelog_opens_with_unreleased_then_the_current_version() -> None:
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", (ROOT / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    versions = {tomllib.loads(path.read_text())["project"]["version"] for path in PYPROJECTS}

    assert headings[0] == ("Unreleased", "")
    assert len(versions) == 1  # the service and the client share one version
    assert headings[1][0] == versions.pop()
    assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", headings[1][1])


def test_the_functions_code_keeps_its_classes_and_functions_short_enough_to_read() -> None:
    """No class over 150 lines and no function over 50 in functions/ (ruff holds arguments, statements and
    branches: pyproject.toml)."""
    import ast

    too_long = []
    for path in sorted((ROOT / "functions").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            limit = 150 if isinstance(node, ast.ClassDef) else 50
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")

    assert too_long == []


def test_no_function_of_the_function_takes_more_than_six_parameters_self_included() -> None:
    """Ruff's PLR0913 does not count self; this does. A constructor that only wires collaborators says so on
    its line (`# noqa: PLR0913 - wiring`), and so does an override of a library's method (`# the signature
    of ...`)."""
    import ast

    too_many = []
    for path in sorted((ROOT / "functions").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            arguments = node.args
            count = len(arguments.posonlyargs) + len(arguments.args) + len(arguments.kwonlyargs) + \
                bool(arguments.vararg) + bool(arguments.kwarg)
            said_why = re.search(r"# (noqa: PLR0913 - wiring|the signature of \w+)", lines[node.lineno - 1])
            if count > 6 and not said_why:
                too_many.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {count}")

    assert too_many == []


def test_the_functions_modules_import_each_other_without_a_cycle() -> None:
    # Every import between the modules counts, whether at the top, under TYPE_CHECKING or inside a function.
    package = ROOT / "functions" / "token_vending"
    imports = {path.stem: {node.module.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                           if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
               for path in package.glob("*.py")}

    def cycle_from(module: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        for imported in sorted(imports.get(module, ())):
            if imported in path:
                return (*path[path.index(imported):], imported)
            if found := cycle_from(imported, (*path, imported)):
                return found
        return None

    assert [cycle for module in sorted(imports) if (cycle := cycle_from(module, (module,)))] == []
