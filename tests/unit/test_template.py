"""template.yaml's promises about the schedule, failure handling, alarms, dashboard and access control,
read from the template itself (short-form tags come back as {"Ref": ...}, {"If": [...]}, ...)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from devstack.template import load_template

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "SangomaTokenVending"
NO_VALUE = {"Ref": "AWS::NoValue"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


@pytest.fixture(scope="module")
def function(resources: dict[str, Any]) -> dict[str, Any]:
    return dict(resources["TokenVendingFunction"]["Properties"])


def test_names_others_rely_on_are_kept(template: dict[str, Any], function: dict[str, Any]) -> None:
    assert {"SecretPrefix", "TokenUrl"} <= set(template["Parameters"])
    assert "VendingUrl" in template["Outputs"]
    assert {"TOKEN_TABLE_NAME", "TOKEN_KMS_KEY_ID", "SECRET_PREFIX", "TOKEN_URL", "MIN_TTL_SECONDS",
            "SECRET_CACHE_SECONDS", "REFRESH_BEFORE_SECONDS"} <= set(function["Environment"]["Variables"])


def test_refresh_window_is_a_parameter_of_seven_days(template: dict[str, Any], function: dict[str, Any]) -> None:
    assert function["Environment"]["Variables"]["REFRESH_BEFORE_SECONDS"] == {"Ref": "RefreshBeforeSeconds"}
    assert template["Parameters"]["RefreshBeforeSeconds"]["Default"] == 7 * 86_400


def test_schedule_runs_hourly_by_default_and_sends_the_bare_event_without_a_list(
        template: dict[str, Any], function: dict[str, Any]) -> None:
    event = function["Events"]["Prewarm"]
    assert event["Type"] == "Schedule"
    properties = event["Properties"]
    assert properties["Schedule"] == {"Ref": "PrewarmSchedule"}
    assert template["Parameters"]["PrewarmSchedule"]["Default"] == "rate(1 hour)"
    assert properties["State"] == "ENABLED"
    assert template["Parameters"]["PrewarmList"]["Default"] == ""
    # No list: no Input, so EventBridge sends its own scheduled event (source aws.events).
    condition, with_list, without_list = properties["Input"]["If"]
    assert template["Conditions"][condition] == {"Not": [{"Equals": [{"Ref": "PrewarmList"}, ""]}]}
    assert without_list == NO_VALUE
    # With a list: the Input is the event shape of events/prewarm.json.
    listed = json.loads((ROOT / "events" / "prewarm.json").read_text())["prewarm"]
    rendered = with_list["Sub"].replace("${PrewarmList}", json.dumps(listed))
    assert json.loads(rendered) == {"prewarm": listed}
    assert re.fullmatch(template["Parameters"]["PrewarmList"]["AllowedPattern"], json.dumps(listed))


def test_failed_scheduled_runs_are_retried_a_bounded_number_of_times_then_kept_in_an_encrypted_queue(
        resources: dict[str, Any], function: dict[str, Any]) -> None:
    queue_arn = {"GetAtt": "PrewarmFailureQueue.Arn"}
    invoke = function["EventInvokeConfig"]
    assert 0 <= invoke["MaximumRetryAttempts"] <= 2
    assert 60 <= invoke["MaximumEventAgeInSeconds"] <= 3600
    assert invoke["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn
    delivery = function["Events"]["Prewarm"]["Properties"]
    assert delivery["RetryPolicy"]["MaximumRetryAttempts"] <= 5
    assert delivery["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 3600
    assert delivery["DeadLetterConfig"] == {"Arn": queue_arn}
    queue = resources["PrewarmFailureQueue"]["Properties"]
    assert queue.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue
    # EventBridge may write to it only for this rule.
    [allow] = [statement for statement in resources["PrewarmFailureQueuePolicy"]["Properties"]["PolicyDocument"][
        "Statement"] if statement["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == {"GetAtt": "TokenVendingFunctionPrewarm.Arn"}


def test_function_role_keeps_least_privilege(function: dict[str, Any]) -> None:
    statements = [statement for policy in function["Policies"] for statement in policy["Statement"]]
    actions = [action for statement in statements
               for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])]
    assert all("*" not in action for action in actions), actions
    assert all(statement["Resource"] != "*" for statement in statements)
    assert "cloudwatch:PutMetricData" not in actions  # metrics are EMF log lines
    assert set(actions) == {"secretsmanager:GetSecretValue", "dynamodb:GetItem", "dynamodb:PutItem",
                            "dynamodb:DeleteItem", "dynamodb:Scan", "kms:Encrypt", "kms:Decrypt"}


def test_reserved_concurrency_is_a_parameter(template: dict[str, Any], function: dict[str, Any]) -> None:
    assert function["ReservedConcurrentExecutions"] == {
        "If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, NO_VALUE]}
    assert "ReservedConcurrency" in template["Parameters"]


def test_api_admits_only_the_account_or_the_organization(template: dict[str, Any],
                                                         resources: dict[str, Any]) -> None:
    auth = resources["VendingApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "AWS_IAM"
    statements = auth["ResourcePolicy"]["CustomStatements"]
    by_sid = {statement["Sid"]: statement for statement in statements if "Sid" in statement}
    allow, deny = by_sid["AdmitAccountOrOrganization"], by_sid["DenyOutsideAccountOrOrganization"]
    assert allow["Effect"] == "Allow" and deny["Effect"] == "Deny"
    assert allow["Condition"]["If"] == [
        "HasOrganization",
        {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}},
        {"StringEquals": {"aws:PrincipalAccount": {"Ref": "AWS::AccountId"}}},
    ]
    assert deny["Condition"]["If"] == [
        "HasOrganization",
        {"StringNotEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}},
        {"StringNotEquals": {"aws:PrincipalAccount": {"Ref": "AWS::AccountId"}}},
    ]
    assert template["Parameters"]["OrganizationId"]["Default"] == ""
    assert template["Conditions"]["HasOrganization"] == {"Not": [{"Equals": [{"Ref": "OrganizationId"}, ""]}]}


def test_api_can_be_private_behind_one_vpc_endpoint(template: dict[str, Any], resources: dict[str, Any]) -> None:
    api = resources["VendingApi"]["Properties"]
    assert api["EndpointConfiguration"] == {
        "Type": {"If": ["IsPrivateApi", "PRIVATE", "REGIONAL"]},
        "VPCEndpointIds": {"If": ["IsPrivateApi", [{"Ref": "PrivateApiVpcEndpointId"}], NO_VALUE]},
    }
    [only_endpoint] = [statement["If"] for statement in api["Auth"]["ResourcePolicy"]["CustomStatements"]
                       if "If" in statement]
    condition, deny, otherwise = only_endpoint
    assert condition == "IsPrivateApi" and otherwise == NO_VALUE
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"StringNotEquals": {"aws:SourceVpce": {"Ref": "PrivateApiVpcEndpointId"}}}
    assert template["Parameters"]["PrivateApiVpcEndpointId"]["Default"] == ""


def test_stage_logs_access_throttles_and_never_caches_or_logs_bodies(resources: dict[str, Any]) -> None:
    api = resources["VendingApi"]["Properties"]
    assert api["AccessLogSetting"]["DestinationArn"] == {"GetAtt": "ApiAccessLogGroup.Arn"}
    assert "RetentionInDays" in resources["ApiAccessLogGroup"]["Properties"]
    log_format = api["AccessLogSetting"]["Format"]
    assert json.loads(re.sub(r"\$context\.[A-Za-z.]+", "x", log_format))["requestId"] == "x"
    assert "responseBody" not in log_format
    [default] = [setting for setting in api["MethodSettings"]
                 if setting["ResourcePath"] == "/*" and setting["HttpMethod"] == "*"]
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(default)
    assert default["DataTraceEnabled"] is False and default["CachingEnabled"] is False
    assert api["CacheClusterEnabled"] is False
    assert api["TracingEnabled"] is True


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: resource["Properties"] for name, resource in resources.items()
            if resource["Type"] == "AWS::CloudWatch::Alarm"}


def test_alarms_cover_upstream_errors_5xx_prewarm_failures_function_errors_and_throttles(
        template: dict[str, Any], resources: dict[str, Any]) -> None:
    watched = {(alarm["Namespace"], alarm["MetricName"]) for alarm in _alarms(resources).values()}
    assert {(NAMESPACE, "UpstreamErrors"), ("AWS/ApiGateway", "5XXError"), (NAMESPACE, "PrewarmFailed"),
            ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles")} <= watched
    topic = {"If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], NO_VALUE]}
    for alarm in _alarms(resources).values():
        assert alarm["AlarmActions"] == topic
        assert alarm["TreatMissingData"] == "notBreaching"
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    # The 5xx alarm watches this API by the name the template gives it.
    assert resources["VendingApi"]["Properties"]["Name"] == {"Ref": "AWS::StackName"}
    [api_alarm] = [alarm for alarm in _alarms(resources).values() if alarm["MetricName"] == "5XXError"]
    assert {"Name": "ApiName", "Value": {"Ref": "AWS::StackName"}} in api_alarm["Dimensions"]


def _dashboard_metrics(resources: dict[str, Any]) -> list[tuple[str, str]]:
    body = resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    found = []
    for widget in widgets:
        namespace = name = ""
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], str):  # not a metric-math expression
                namespace = namespace if row[0] == "." else row[0]
                name = name if row[1] == "." else row[1]
                found.append((namespace, name))
    return found


def _emittable_metric_names() -> set[str]:
    """Every metric name the function's code emits, from calling its record_* helpers."""
    from token_vending import errors, observability

    observability.take_metrics()
    codes = {cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.VendingError)}
    for outcome in {"ok", "not_found", *codes}:
        observability.record_vend(outcome)
    for tier in ("memory", "table", "upstream"):
        observability.record_vend("ok", tier)
    for kind in ("ok", "unreachable", "unusable", "http_400", "http_401", "http_429", "http_500", "http_503"):
        observability.record_upstream(kind, 12.0)
    for dependency in ("dynamodb", "secretsmanager"):
        observability.record_degraded(dependency)
    observability.record_single_flight_wait()
    observability.record_prewarm({}, 86_400.0, 1)
    observability.record_mint_limit_reached()
    observability.record_unsealable_entry()
    return set(observability.take_metrics())


def test_dashboard_and_alarms_use_only_metrics_the_function_emits(resources: dict[str, Any]) -> None:
    emitted = _emittable_metric_names()
    ours = {name for namespace, name in _dashboard_metrics(resources) if namespace == NAMESPACE}
    ours |= {alarm["MetricName"] for alarm in _alarms(resources).values() if alarm["Namespace"] == NAMESPACE}
    assert ours - emitted == set()
    # What an operator looks at first.
    for wanted in ("SoonestTokenExpiry", "PrewarmFailed", "UpstreamLatency", "Vend_ok", "CacheTier_memory",
                   "UpstreamRequests", "UpstreamErrors"):
        assert wanted in ours


def test_every_scan_suppression_says_why(resources: dict[str, Any]) -> None:
    for name, resource in resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), name
            assert len(skip.get("comment", "")) > 40, f"{name} {skip['id']} needs a reason"
