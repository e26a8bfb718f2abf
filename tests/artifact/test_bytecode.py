"""`make build` ships CPython 3.13 bytecode for every module of the function and of each layer, in a
form that a deploy's zip round trip (file times not kept) leaves valid: hash-based pycs."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

from devstack.lambda_container import BUILD, Artifact, runtime_python, unpack
from devstack.template import load_template

# Run by the runtime's 3.13: for each .py, its __pycache__ pyc must carry 3.13's magic number, the
# unchecked-hash flag (PEP 552: used without looking at file times) and the hash of that very source.
CHECK = """
import importlib.util, json, pathlib, sys
problems, modules = [], {}
for folder in sys.argv[1:]:
    modules[folder] = 0
    for source in sorted(pathlib.Path(folder).rglob("*.py")):
        modules[folder] += 1
        data = source.read_bytes()
        try:
            pyc = pathlib.Path(importlib.util.cache_from_source(str(source))).read_bytes()
        except OSError:
            problems.append(f"{source}: no bytecode")
            continue
        if pyc[:4] != importlib.util.MAGIC_NUMBER:
            problems.append(f"{source}: not 3.13 bytecode")
        elif int.from_bytes(pyc[4:8], "little") != 0b01:
            problems.append(f"{source}: not an unchecked hash-based pyc")
        elif pyc[8:16] != importlib.util.source_hash(data):
            problems.append(f"{source}: bytecode of another source")
print(json.dumps({"modules": modules, "problems": problems, "tag": sys.implementation.cache_tag}))
"""


def built_folders() -> list[Path]:
    """The function's folder and every layer's, as `sam build` left them."""
    resources = load_template(BUILD / "template.yaml")["Resources"]
    folders = []
    for resource in resources.values():
        uri = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}.get(
            resource["Type"])
        if uri:
            folders.append(BUILD / resource["Properties"][uri])
    return folders


def test_every_module_of_the_function_and_layers_has_valid_313_bytecode_after_a_zip_round_trip(
        built: Artifact, tmp_path: Path) -> None:
    folders = built_folders()
    everything = unpack(replace(built, task_root=folders[0], layers=tuple(folders[1:])), tmp_path)

    checked = subprocess.run([str(runtime_python()), "-I", "-B", "-c", CHECK, *map(str, everything.folders)],
                             capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(checked.stdout)

    assert result["tag"] == "cpython-313"
    assert result["problems"] == []
    assert all(count > 0 for count in result["modules"].values())  # the function and each layer
    assert sum(result["modules"].values()) > 300  # the layer's packages too, not only our own modules
