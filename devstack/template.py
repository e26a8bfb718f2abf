"""Reading template.yaml, so local resources are built from the same definitions that deploy."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _any_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    stat = path.stat()
    return copy.deepcopy(_parsed(path.resolve(), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parsed(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    # Parsing the template takes about 0.2 s and every test's fresh local stack needs it: parsed once per
    # version of the file (its time and size are part of the cache key), copied for each caller.
    with path.open() as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # type: ignore[no-any-return]  # noqa: S506 - a SafeLoader subclass


def resource(logical_id: str, path: Path = TEMPLATE) -> dict[str, Any]:
    stat = path.stat()
    return copy.deepcopy(_parsed(path.resolve(), stat.st_mtime_ns, stat.st_size)["Resources"][logical_id])  # type: ignore[no-any-return]


def table_definition(name: str, path: Path = TEMPLATE) -> dict[str, Any]:
    """create_table arguments for the TokenTable, taken from the template."""
    properties = resource("TokenTable", path)["Properties"]
    return {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties["BillingMode"],
    }


def ttl_attribute(path: Path = TEMPLATE) -> str:
    return str(resource("TokenTable", path)["Properties"]["TimeToLiveSpecification"]["AttributeName"])
