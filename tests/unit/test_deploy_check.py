"""make deploy-check's reading of a transformed template: each check finds what it is there to find (a second
stage, a target that bypasses the alias, a permission for any stage, a cycle, a shared layer name), and
values resolve as CloudFormation resolves them. The whole tool, with the SAM transform, runs in
tests/integration/test_deploy_check_tool.py and in `make test`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tools.cfn_values import Values
from tools.deploy_check import check_layers, check_live_targets, check_revision, check_stages, cycle

ALIAS, LIVE = "TokenVendingFunctionAliaslive", {"Ref": "TokenVendingFunctionAliaslive"}
URI = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/${%s}/invocations"


def transformed() -> dict[str, Any]:
    """The resources make deploy-check expects, resolved (what CloudFormation would create)."""
    return {
        "VendingApi": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Body": {"paths": {"/apps/{app}/token": {
            "get": {"x-amazon-apigateway-integration": {"uri": URI % ALIAS}},
            "delete": {"x-amazon-apigateway-integration": {"uri": URI % ALIAS}}}}}}},
        "VendingApiDeployment1": {"Type": "AWS::ApiGateway::Deployment",
                                  "Properties": {"RestApiId": {"Ref": "VendingApi"}}},
        "VendingApiv1Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {"StageName": "v1"}},
        "InvokeGet": {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": LIVE, "Principal": "apigateway.amazonaws.com",
            "SourceArn": "arn:aws:execute-api:us-east-1:123456789012:${VendingApi}/v1/GET/apps/*/token"}},
        "Prewarm": {"Type": "AWS::Events::Rule", "Properties": {"Targets": [{"Arn": LIVE, "Id": "x"}]}},
        "PrewarmPermission": {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": LIVE, "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": ["Prewarm", "Arn"]}}},
        "EventInvokeConfig": {"Type": "AWS::Lambda::EventInvokeConfig", "Properties": {
            "FunctionName": {"Ref": "TokenVendingFunction"}, "Qualifier": "live"}},
        "DependenciesLayerabc": {"Type": "AWS::Lambda::LayerVersion", "Properties": {"LayerName": "dev-dependencies"}},
        "ClientLayerdef": {"Type": "AWS::Lambda::LayerVersion", "Properties": {"LayerName": "dev-client"}},
    }


def test_the_expected_shape_passes_every_check() -> None:
    resources = transformed()

    assert check_stages(resources) == []
    assert check_live_targets(resources, ALIAS) == (
        [], "2 API routes, 1 schedule target, 2 permissions, 1 event-invoke config -> live")
    assert check_layers(resources, "dev") == ([], ["dev-client", "dev-dependencies"])


def test_a_deployment_with_a_stage_name_is_a_second_stage() -> None:
    resources = transformed()
    resources["VendingApiDeployment1"]["Properties"]["StageName"] = "Stage"  # what SAM adds without OpenApiVersion

    assert check_stages(resources) == ["API stages ['v1', 'Stage'], not only v1"]


@pytest.mark.parametrize(("where", "found"), [
    (("VendingApi", "Properties", "Body", "paths", "/apps/{app}/token", "get", "x-amazon-apigateway-integration",
      "uri"), "an API integration calls"),
    (("Prewarm", "Properties", "Targets", 0, "Arn"), "a schedule target is"),
    (("PrewarmPermission", "Properties", "FunctionName"), "PrewarmPermission lets events.amazonaws.com invoke"),
])
def test_a_target_that_is_the_function_itself_is_found(where: tuple[Any, ...], found: str) -> None:
    resources = transformed()
    node: Any = resources
    for key in where[:-1]:
        node = node[key]
    function_arn = {"Fn::GetAtt": ["TokenVendingFunction", "Arn"]}
    node[where[-1]] = URI % "TokenVendingFunction.Arn" if "uri" in where else function_arn

    problems, _ = check_live_targets(resources, ALIAS)

    assert len(problems) == 1 and problems[0].startswith(found), problems


def test_a_permission_for_every_stage_and_an_unqualified_invoke_config_are_found() -> None:
    resources = transformed()
    any_stage = "arn:aws:execute-api:us-east-1:1:${VendingApi}/*/GET/apps/*/token"
    resources["InvokeGet"]["Properties"]["SourceArn"] = any_stage
    del resources["EventInvokeConfig"]["Properties"]["Qualifier"]

    problems, _ = check_live_targets(resources, ALIAS)

    assert problems == [f"InvokeGet admits stage ['*']: {any_stage}", "an event-invoke config is for None"]


def test_a_layer_without_the_stack_in_its_name_is_found() -> None:
    resources = transformed()
    resources["ClientLayerdef"]["Properties"]["LayerName"] = "ClientLayer"

    assert check_layers(resources, "dev")[0] == ["layer ClientLayerdef is named ClientLayer, not dev-client"]


def test_versions_must_follow_the_revision() -> None:
    same = {"0123456789abcdef": "V0123456789", "0123456789abcdef again": "V0123456789",
            "fedcba9876543210": "Vfedcba9876"}
    stuck = {**same, "fedcba9876543210": "V0123456789"}

    assert check_revision(same, "Vends tokens. 0123456789abcdef") == []
    assert check_revision(stuck, "Vends tokens.") == [
        "two Revisions named one version: V0123456789",
        "the function's description does not end with the Revision: 'Vends tokens.'"]


def test_a_circular_dependency_is_found_through_ref_getatt_sub_and_depends_on() -> None:
    template = {"Resources": {
        "A": {"Type": "X", "Properties": {"P": {"Fn::Sub": "${B.Arn}/x"}}},
        "B": {"Type": "X", "Properties": {"P": {"Fn::GetAtt": ["C", "Arn"]}}},
        "C": {"Type": "X", "DependsOn": "A", "Properties": {"P": {"Ref": "SomeParameter"}}},
    }}

    assert sorted(cycle(template)[:-1]) == ["A", "B", "C"]
    acyclic = copy.deepcopy(template)
    del acyclic["Resources"]["C"]["DependsOn"]
    assert cycle(acyclic) == []


TEMPLATE = {
    "Parameters": {
        "SnapStart": {"Type": "String", "Default": "false"},
        "Keys": {"Type": "CommaDelimitedList", "Default": ""},
        "Vpce": {"Type": "String", "Default": ""},
    },
    "Conditions": {
        "UseSnapStart": {"Fn::Equals": [{"Ref": "SnapStart"}, "true"]},
        "HasKeys": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "Keys"}]}, ""]}]},
        "Both": {"Fn::And": [{"Condition": "UseSnapStart"}, {"Condition": "HasKeys"}]},
    },
    "Resources": {
        "Fn": {"Type": "F", "Properties": {
            "SnapStart": {"ApplyOn": {"Fn::If": ["UseSnapStart", "PublishedVersions", "None"]}},
            "Keys": {"Fn::If": ["HasKeys", {"Ref": "Keys"}, {"Ref": "AWS::NoValue"}]},
            "Name": {"Fn::Sub": ["${AWS::StackName}-${Suffix}-${Other}", {"Suffix": "client"}]}}},
        "OnlyWithBoth": {"Type": "F", "Condition": "Both"},
    },
}


def test_values_resolve_conditions_branches_and_strings_as_cloudformation_does() -> None:
    pseudo = {"AWS::StackName": "prod"}
    defaults = Values(TEMPLATE, {}, pseudo).resources(TEMPLATE)
    given = Values(TEMPLATE, {"SnapStart": "true", "Keys": "arn:1,arn:2"}, pseudo).resources(TEMPLATE)

    assert defaults == {"Fn": {"Type": "F", "Properties": {
        "SnapStart": {"ApplyOn": "None"}, "Name": "prod-client-${Other}"}}}  # no Keys: AWS::NoValue
    assert given["Fn"]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert given["Fn"]["Properties"]["Keys"] == ["arn:1", "arn:2"]
    assert "OnlyWithBoth" in given
