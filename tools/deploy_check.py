"""`make deploy-check`: the built template through the SAM transform, once per parameter set that changes
what it produces, and each result checked before any deploy runs it.

    .venv-sam/bin/python -m tools.deploy_check [--build-dir .aws-sam/build]

The parameter sets: the template's defaults, each samconfig.toml config env (its stack name and
parameter_overrides), SnapStart on, DetailedTracing on, a private API, customer managed secret keys. The
transform gets the parameter values, as CloudFormation's does (SAM resolves some of them, the resource
policy's for one); the checks then read the result as CloudFormation would resolve it (tools/cfn_values.py).
For each set: no circular dependency; one stage, v1; API Gateway, the schedule, every Lambda permission
and the event-invoke configuration reach the function only through the alias `live`, and API Gateway
only from stage v1; the published version is named after Revision (two Revisions, two versions; the
same Revision, the same); every layer is named after the stack; what the set turns on is there; cfn-lint
finds nothing in the transformed template. One line per set; exit status 1 if any check fails. The
transformed templates are left in <build-dir>/../deploy-check/ to read.
"""

from __future__ import annotations

import argparse
import copy
import graphlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cfn_values import Values
from .deploy import BUILD_DIR, REVISION, ROOT, SAMCONFIG, deploy_envs, samconfig_overrides
from .revision import artifact_dirs, tree_digest

FUNCTION, ALIAS_NAME = "TokenVendingFunction", "live"
REGION, ACCOUNT = "us-east-1", "123456789012"
REVISIONS = ("0123456789abcdef", "fedcba9876543210")
LAYER_SUFFIXES = {"DependenciesLayer": "dependencies", "ClientLayer": "client"}
VPC_ENDPOINT = "vpce-0123456789abcdef0"
SECRET_KEYS = [f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{n * 8}-{n * 4}-{n * 4}-{n * 4}-{n * 12}" for n in "12"]

Resources = dict[str, dict[str, Any]]


@dataclass
class ParameterSet:
    name: str
    stack: str
    given: dict[str, str]
    expect: Callable[[Resources], list[str]] = field(default=lambda resources: [])
    effect: str = ""  # what expect() found, for the summary line


def _function(resources: Resources) -> dict[str, Any]:
    return dict(resources[FUNCTION]["Properties"])


def _expect_snapstart(resources: Resources) -> list[str]:
    apply_on = _function(resources).get("SnapStart", {}).get("ApplyOn")
    return [] if apply_on == "PublishedVersions" else [f"SnapStart ApplyOn is {apply_on}, not PublishedVersions"]


def _expect_tracing(resources: Resources) -> list[str]:
    disabled = _function(resources)["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"]
    return [] if disabled == "false" else [f"POWERTOOLS_TRACE_DISABLED is {disabled!r}, not 'false'"]


def _expect_private(resources: Resources) -> list[str]:
    api = next(r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::RestApi")
    problems = []
    if api["EndpointConfiguration"] != {"Types": ["PRIVATE"], "VpcEndpointIds": [VPC_ENDPOINT]}:
        problems.append(f"endpoint configuration {api['EndpointConfiguration']}")
    conditions = [s.get("Condition", {}) for s in api["Body"]["x-amazon-apigateway-policy"]["Statement"]]
    if {"StringNotEquals": {"aws:SourceVpce": VPC_ENDPOINT}} not in conditions:
        problems.append("the resource policy does not deny requests from outside the VPC endpoint")
    return problems


def _expect_secret_keys(resources: Resources) -> list[str]:
    statements = resources["TokenVendingFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    decrypt = [s for s in statements if s["Action"] == "kms:Decrypt"]
    return [] if [s["Resource"] for s in decrypt] == [SECRET_KEYS] else ["no kms:Decrypt on the given keys"]


def parameter_sets(config: Path = SAMCONFIG) -> list[ParameterSet]:
    from samcli.lib.config.samconfig import SamConfig

    samconfig = SamConfig(str(config.parent), config.name)
    sets = [ParameterSet("defaults", "deploy-check", {})]
    for env in deploy_envs(config):
        stack = str(samconfig.get_all(["deploy"], "parameters", env=env).get("stack_name", env))
        sets.append(ParameterSet(f"samconfig {env}", stack, samconfig_overrides(env, config)))
    return [
        *sets,
        ParameterSet("SnapStart on", "deploy-check", {"SnapStart": "true"}, _expect_snapstart,
                     "SnapStart on published versions; "),
        ParameterSet("DetailedTracing on", "deploy-check", {"DetailedTracing": "true"}, _expect_tracing,
                     "Powertools tracing on; "),
        ParameterSet("private API", "deploy-check", {"PrivateApiVpcEndpointId": VPC_ENDPOINT}, _expect_private,
                     f"PRIVATE, only through {VPC_ENDPOINT}; "),
        ParameterSet("custom KMS keys", "deploy-check", {"SecretKmsKeyArns": ",".join(SECRET_KEYS)},
                     _expect_secret_keys, "kms:Decrypt on the 2 keys; "),
    ]


def packaged(build_dir: Path) -> dict[str, Any]:
    """The built template as `sam package` leaves it: code and layers at S3 keys named by their contents."""
    from samtranslator.yaml_helper import yaml_parse

    template: dict[str, Any] = yaml_parse((build_dir / "template.yaml").read_text())
    for logical_id, path in artifact_dirs(build_dir).items():
        properties = template["Resources"][logical_id]["Properties"]
        key = "CodeUri" if "CodeUri" in properties else "ContentUri"
        properties[key] = f"s3://deploy-check/{tree_digest(path)}"
    return template


def transform(template: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """What CloudFormation's AWS::Serverless transform makes of the template for these parameter values."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    translator = Translator(managed_policy_map=None, sam_parser=Parser(), plugins=[],
                            boto_session=boto3.session.Session(region_name=REGION))
    result: dict[str, Any] = translator.translate(sam_template=copy.deepcopy(template), parameter_values=dict(given),
                                                  get_managed_policy_map=dict)
    translator.metrics.publish()  # to SAM's dummy publisher; unpublished ones would be complained about
    return result


def _references(node: Any) -> Iterator[str]:
    """Logical ids (or parameter names) a node refers to: Ref, GetAtt, and ${...} in Fn::Sub."""
    if isinstance(node, list):
        for item in node:
            yield from _references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield (value.split(".")[0] if isinstance(value, str) else value[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                yield from (name.split(".")[0] for name in re.findall(r"\$\{([^}!][^}]*)\}", text))
                yield from _references(value[1:] if isinstance(value, list) else [])
            else:
                yield from _references(value)


def cycle(transformed: dict[str, Any]) -> list[str]:
    """A circular dependency among the resources, [] if none (CloudFormation refuses a template with one)."""
    resources = transformed["Resources"]
    graph = {}
    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn", [])
        needed = set(_references(resource)) | set([depends] if isinstance(depends, str) else depends)
        graph[logical_id] = {name for name in needed if name in resources and name != logical_id}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        return list(error.args[1])
    return []


def _of_type(resources: Resources, kind: str) -> dict[str, dict[str, Any]]:
    return {logical_id: r.get("Properties", {}) for logical_id, r in resources.items() if r["Type"] == kind}


def check_stages(resources: Resources) -> list[str]:
    """Only v1: a Stage resource per stage, and any StageName on a Deployment makes one more."""
    stages = [p.get("StageName") for p in _of_type(resources, "AWS::ApiGateway::Stage").values()]
    stages += [p["StageName"] for p in _of_type(resources, "AWS::ApiGateway::Deployment").values() if "StageName" in p]
    return [] if stages == ["v1"] else [f"API stages {stages}, not only v1"]


def _integration_uris(body: dict[str, Any]) -> list[Any]:
    key = "x-amazon-apigateway-integration"
    return [operation[key].get("uri") for path in body.get("paths", {}).values()
            for operation in path.values() if isinstance(operation, dict) and key in operation]


def check_live_targets(resources: Resources, alias: str) -> tuple[list[str], str]:
    """Problems, and a summary of what reaches the function through the alias."""
    problems, live = [], {"Ref": alias}
    uris = [uri for api in _of_type(resources, "AWS::ApiGateway::RestApi").values()
            for uri in _integration_uris(api.get("Body", {}))]
    problems += [f"an API integration calls {uri}" for uri in uris if f"/functions/${{{alias}}}/invocations" not in uri]
    targets = [target for rule in _of_type(resources, "AWS::Events::Rule").values() for target in rule["Targets"]]
    problems += [f"a schedule target is {t['Arn']}" for t in targets if t["Arn"] != live]
    permissions = _of_type(resources, "AWS::Lambda::Permission")
    for logical_id, permission in permissions.items():
        if permission["FunctionName"] != live:
            problems.append(f"{logical_id} lets {permission['Principal']} invoke {permission['FunctionName']}")
        if permission["Principal"] == "apigateway.amazonaws.com":
            stage = str(permission.get("SourceArn", "")).split(":", 5)[-1].split("/")[1:2]
            if stage != ["v1"]:
                problems.append(f"{logical_id} admits stage {stage}: {permission.get('SourceArn')}")
    configs = list(_of_type(resources, "AWS::Lambda::EventInvokeConfig").values())
    problems += [f"an event-invoke config is for {c.get('Qualifier')}" for c in configs
                 if c.get("Qualifier") != ALIAS_NAME]
    summary = (f"{len(uris)} API routes, {len(targets)} schedule target, {len(permissions)} permissions, "
               f"{len(configs)} event-invoke config -> {ALIAS_NAME}")
    return problems, summary


def live_version(transformed: dict[str, Any]) -> tuple[str, str]:
    """(the alias's logical id, the logical id of the version it points at)."""
    [(alias, resource)] = [(logical_id, r) for logical_id, r in transformed["Resources"].items()
                           if r["Type"] == "AWS::Lambda::Alias" and r["Properties"]["Name"] == ALIAS_NAME]
    return alias, resource["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]


def check_revision(versions: dict[str, str], description: str) -> list[str]:
    """versions: {Revision: version logical id}, the first Revision transformed twice."""
    first, second = REVISIONS
    problems = []
    if versions[first] != versions[f"{first} again"]:
        problems.append(f"the same Revision named two versions: {versions[first]}, {versions[first + ' again']}")
    if versions[first] == versions[second]:
        problems.append(f"two Revisions named one version: {versions[first]}")
    if not description.endswith(first):  # a new description is what makes Lambda publish a new version
        problems.append(f"the function's description does not end with the Revision: {description!r}")
    return problems


def check_layers(resources: Resources, stack: str) -> tuple[list[str], list[str]]:
    layers = _of_type(resources, "AWS::Lambda::LayerVersion")
    names = {logical_id: properties.get("LayerName") for logical_id, properties in layers.items()}
    problems = []
    for logical_id, name in names.items():
        wanted = next((f"{stack}-{suffix}" for prefix, suffix in LAYER_SUFFIXES.items()
                       if logical_id.startswith(prefix)), None)
        if name != wanted:
            problems.append(f"layer {logical_id} is named {name}, not {wanted}")
    return problems, sorted(str(name) for name in names.values())


def lint(path: Path) -> list[str]:
    from cfnlint.api import ManualArgs, lint_file

    return [f"cfn-lint {match.rule.id}: {match.message} ({'/'.join(map(str, match.path))})"
            for match in lint_file(path, ManualArgs(regions=[REGION]))]


def check(template: dict[str, Any], parameters: ParameterSet, out_dir: Path) -> tuple[list[str], str]:
    """(problems, summary) for one parameter set."""
    versions, transformed = {}, {}
    for label, value in ((REVISIONS[0], REVISIONS[0]), (f"{REVISIONS[0]} again", REVISIONS[0]),
                         (REVISIONS[1], REVISIONS[1])):
        transformed = transform(template, {**parameters.given, REVISION: value})
        alias, versions[label] = live_version(transformed)
        if label == REVISIONS[0]:
            first = transformed
    pseudo = {"AWS::StackName": parameters.stack, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
              "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
    resources = Values(first, {**parameters.given, REVISION: REVISIONS[0]}, pseudo).resources(first)
    problems = [f"circular dependency: {' -> '.join(found)}" for found in [cycle(first)] if found]
    problems += check_stages(resources)
    target_problems, targets = check_live_targets(resources, alias)
    problems += target_problems
    problems += check_revision(versions, _function(resources).get("Description", ""))
    layer_problems, layers = check_layers(resources, parameters.stack)
    problems += layer_problems + parameters.expect(resources)
    out = out_dir / (re.sub(r"[^a-z0-9]+", "-", parameters.name.lower()) + ".json")
    out.write_text(json.dumps(first, indent=1, default=str))
    problems += lint(out)
    first_id, second_id = (versions[label][len(FUNCTION) + len("Version"):] for label in REVISIONS)
    summary = (f"stack {parameters.stack}: {parameters.effect}stages [v1]; {targets}; version "
               f"{FUNCTION}Version{{{first_id}, again {first_id}, {second_id}}} for Revision "
               f"{{{REVISIONS[0]}, again, {REVISIONS[1]}}}; layers {', '.join(layers)}; no cycle; cfn-lint clean")
    return problems, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=ROOT / BUILD_DIR)
    parser.add_argument("--only", action="append", metavar="NAME", help="this parameter set only (repeatable)")
    args = parser.parse_args(argv)
    template = packaged(args.build_dir)
    out_dir = args.build_dir.parent / "deploy-check"
    out_dir.mkdir(exist_ok=True)
    sets = [each for each in parameter_sets() if not args.only or each.name in args.only]
    failed = 0
    for parameters in sets:
        try:
            problems, summary = check(template, parameters, out_dir)
        except Exception as error:  # a transform that fails is this set's finding, not a crash
            problems, summary = [f"the transform failed: {error}"], ""
        failed += bool(problems)
        print(f"FAIL {parameters.name}: {'; '.join(problems)}" if problems else f"ok   {parameters.name:<20} {summary}",
              flush=True)
    print(f"deploy-check: {failed} of {len(sets)} parameter sets failed" if failed else
          f"deploy-check: all parameter sets pass (transformed templates in {out_dir})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
