"""The Revision of a deploy: one hash of what the function's published version is made of.

    revision(build_dir, parameters) -> "3f9c0a51d2e87b64"

It covers every function and layer directory the built template (.aws-sam/build/template.yaml) names, the
built template itself (its Globals, memory, timeout and parameter defaults) and the parameter values the
deploy passes. File contents and relative paths count, not file times: the build compiles hash-based pycs,
so building the same sources twice gives the same bytes and the same Revision.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from devstack.template import load_template

LENGTH = 16  # hex digits; SAM names the version after the first 10
ARTIFACT_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


class BuildMissing(Exception):
    """No complete build where one was expected."""


def artifact_dirs(build_dir: Path) -> dict[str, Path]:
    """{logical id: directory} of every function and layer the built template names."""
    template_path = build_dir / "template.yaml"
    if not template_path.is_file():
        raise BuildMissing(f"no built template at {template_path}: run make build")
    found = {}
    for logical_id, resource in load_template(template_path)["Resources"].items():
        key = ARTIFACT_PROPERTIES.get(resource.get("Type", ""))
        uri = resource.get("Properties", {}).get(key) if key else None
        if isinstance(uri, str):
            path = build_dir / uri
            if not path.is_dir():
                raise BuildMissing(f"{logical_id}'s build {path} is missing: run make build")
            found[logical_id] = path
    return found


def _files(root: Path) -> Iterator[Path]:
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for name in sorted(names):
            yield Path(directory, name)


def tree_digest(root: Path) -> str:
    """SHA-256 over each file's relative path, executable bit and contents (a link: its target), in path order."""
    digest = hashlib.sha256()
    for path in sorted(_files(root), key=lambda path: path.relative_to(root).as_posix()):
        if path.is_symlink():
            kind, content = b"link", os.readlink(path).encode()
        else:
            kind, content = (b"exec" if path.stat().st_mode & 0o111 else b"file"), path.read_bytes()
        name = path.relative_to(root).as_posix().encode()
        digest.update(b"%s %d %s %d\0" % (kind, len(name), name, len(content)))
        digest.update(content)
    return digest.hexdigest()


def parts(build_dir: Path, parameters: Mapping[str, str]) -> dict[str, Any]:
    """What the Revision hashes, by name: each artifact's tree digest, the template's, the parameter values."""
    named: dict[str, Any] = {name: tree_digest(path) for name, path in sorted(artifact_dirs(build_dir).items())}
    named["template.yaml"] = hashlib.sha256((build_dir / "template.yaml").read_bytes()).hexdigest()
    named["parameters"] = dict(sorted(parameters.items()))
    return named


def revision(build_dir: Path, parameters: Mapping[str, str]) -> str:
    """The Revision: equal for the same build and parameter values, different when either changes."""
    encoded = json.dumps(parts(build_dir, parameters), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()[:LENGTH]
