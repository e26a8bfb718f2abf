"""Do callers run what the last deploy configured? The version the alias `live` points at, against $LATEST.

API Gateway and the schedule invoke `live`; a deploy changes $LATEST, and moves `live` only when it
publishes a version. Where the two differ in environment, layers, memory, timeout, SnapStart or code,
callers still run the old version. The function is found from the vending URL (an execute-api URL: the
API's GET integration names the function and alias), or named outright (--function).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ALIAS = "live"
EXECUTE_API_URL = re.compile(
    r"https://(?P<api>[a-z0-9]+)(?:-vpce-[0-9a-f]+)?\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
INTEGRATION_FUNCTION = re.compile(r":lambda:path/[^/]+/functions/(?P<function>arn:[^/]+)/invocations$")
ROUTE = "/apps/{app}/token"
NEEDS = "apigateway:GET, lambda:GetAlias and lambda:GetFunctionConfiguration"


@dataclass(frozen=True)
class Target:
    """A function, and the alias callers invoke (empty: they invoke $LATEST itself)."""

    function: str
    alias: str


def split_qualifier(function: str, default_alias: str = ALIAS) -> Target:
    """`name`, `name:alias`, or a function ARN with or without its alias."""
    if function.startswith("arn:"):
        parts = function.split(":")
        return Target(":".join(parts[:7]), parts[7] if len(parts) > 7 else default_alias)
    name, _, alias = function.partition(":")
    return Target(name, alias or default_alias)


def target_from_url(url: str, apigateway: Any) -> Target | None:
    """What the API behind an execute-api URL invokes for GET {ROUTE}; None for any other URL."""
    match = EXECUTE_API_URL.match(url.rstrip("/") + "/")
    if not match:
        return None
    resources = apigateway.get_resources(restApiId=match["api"], limit=500)["items"]
    [route] = [resource["id"] for resource in resources if resource["path"] == ROUTE] or [None]
    if route is None:
        raise LookupError(f"API {match['api']} has no route {ROUTE}")
    uri = apigateway.get_integration(restApiId=match["api"], resourceId=route, httpMethod="GET")["uri"]
    found = INTEGRATION_FUNCTION.search(uri)
    if not found:
        raise LookupError(f"GET {ROUTE} of API {match['api']} does not invoke a Lambda function ({uri})")
    return split_qualifier(found["function"], default_alias="")


def _compared(configuration: dict[str, Any]) -> dict[str, Any]:
    """What a version's callers get, by the name it is reported under."""
    return {
        "environment": configuration.get("Environment", {}).get("Variables", {}),
        "layers": [layer["Arn"] for layer in configuration.get("Layers", [])],
        "memory": configuration.get("MemorySize"),
        "timeout": configuration.get("Timeout"),
        # ApplyOn, not OptimizationStatus: that is On for a published version and Off for $LATEST.
        "SnapStart": configuration.get("SnapStart", {}).get("ApplyOn", "None"),
        "code": configuration.get("CodeSha256"),
    }


def differences(live: dict[str, Any], latest: dict[str, Any]) -> list[str]:
    """What differs, in words: 'environment (TOKEN_URL)', 'layers', ... (variable names, never values)."""
    old, new = _compared(live), _compared(latest)
    found = []
    for name in old:
        if old[name] == new[name]:
            continue
        if name == "environment":
            changed = sorted(key for key in {*old[name], *new[name]} if old[name].get(key) != new[name].get(key))
            found.append(f"environment ({', '.join(changed)})")
        else:
            found.append(name)
    return found


def compare(lambda_client: Any, target: Target) -> tuple[str, list[str]]:
    """(the version the alias points at, how it differs from $LATEST)."""
    version = lambda_client.get_alias(FunctionName=target.function, Name=target.alias)["FunctionVersion"]
    live = lambda_client.get_function_configuration(FunctionName=target.function, Qualifier=version)
    latest = lambda_client.get_function_configuration(FunctionName=target.function, Qualifier="$LATEST")
    return version, differences(live, latest)
