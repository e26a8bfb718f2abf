"""Sizes of what `sam build` produced, zipped the way SAM zips them (deflate)."""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.lambda_env import ROOT
from devstack.template import load_template

BUILD = ROOT / ".aws-sam" / "build"


@dataclass(frozen=True)
class Artifact:
    logical_id: str
    kind: str  # function | layer
    zipped_bytes: int
    unzipped_bytes: int


def zipped_size(directory: Path) -> tuple[int, int]:
    buffer = io.BytesIO()
    unzipped = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                archive.write(path, path.relative_to(directory))
                unzipped += path.stat().st_size
    return len(buffer.getvalue()), unzipped


def built_artifacts(build: Path = BUILD) -> list[Artifact]:
    """Every function and layer in the built template (a layer added later is picked up too)."""
    template = build / "template.yaml"
    if not template.exists():
        return []
    artifacts = []
    for logical_id, resource in load_template(template)["Resources"].items():
        kind, uri = {"AWS::Serverless::Function": ("function", "CodeUri"),
                     "AWS::Serverless::LayerVersion": ("layer", "ContentUri")}.get(resource["Type"], ("", ""))
        location = resource.get("Properties", {}).get(uri)
        if kind and isinstance(location, str) and (build / location).is_dir():
            artifacts.append(Artifact(logical_id, kind, *zipped_size(build / location)))
    return artifacts
