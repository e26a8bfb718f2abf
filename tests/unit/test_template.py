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


def test_no_function_environment_overrides_what_a_runtime_or_an_emulator_injects(template: dict[str, Any]) -> None:
    # An AWS_ENDPOINT_URL, even an empty one, overrides the endpoint an emulator (LocalStack) gives the SDK;
    # AWS_* as a whole is the runtime's and the SDK's (region, credentials, config files, endpoints).
    environments = {"Globals": template["Globals"]["Function"].get("Environment", {})}
    environments.update({name: resource["Properties"].get("Environment", {})
                         for name, resource in template["Resources"].items()
                         if resource["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")})
    assert "TokenVendingFunction" in environments

    declared = {name: sorted(environment.get("Variables", {})) for name, environment in environments.items()}
    assert {name: [variable for variable in variables if variable.upper().startswith("AWS_")]
            for name, variables in declared.items()} == {name: [] for name in declared}


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


def _role_statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for policy in resources["TokenVendingFunctionRole"]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "If" in statement:  # a statement that exists under a condition: take it
                statement = statement["If"][1]
            statements.append(statement)
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else list(statement["Action"])


def test_function_role_keeps_least_privilege(resources: dict[str, Any], function: dict[str, Any]) -> None:
    assert function["Role"] == {"GetAtt": "TokenVendingFunctionRole.Arn"}
    assert "Policies" not in function  # everything the function may do is in its role, below
    statements = _role_statements(resources)
    actions = [action for statement in statements for action in _actions(statement)]
    assert all("*" not in action for action in actions), actions
    # X-Ray is the one service without resource-level permissions.
    assert [s["Sid"] for s in statements if s["Resource"] == "*"] == ["WriteTraces"]
    assert "cloudwatch:PutMetricData" not in actions  # metrics are EMF log lines
    assert not [action for action in actions if action in ("kms:Encrypt", "kms:GenerateDataKey")]
    assert set(actions) == {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments",
                            "xray:PutTelemetryRecords", "secretsmanager:GetSecretValue", "kms:Decrypt",
                            "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                            "dynamodb:Scan", "sqs:SendMessage"}


def test_secret_keys_are_usable_only_through_secrets_manager(template: dict[str, Any],
                                                            resources: dict[str, Any]) -> None:
    [decrypt] = [s for s in _role_statements(resources) if "kms:Decrypt" in _actions(s)]
    assert decrypt["Resource"] == {"Ref": "SecretKmsKeyArns"}
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}}
    assert template["Parameters"]["SecretKmsKeyArns"]["Default"] == ""
    assert template["Parameters"]["SecretKmsKeyArns"]["Type"] == "CommaDelimitedList"


def test_only_the_function_can_use_the_token_key_and_only_with_the_sealing_context(
        resources: dict[str, Any]) -> None:
    from token_vending.token_store import sealing_context
    from token_vending.tokens import CachedToken, TokenKey

    token = CachedToken(access_token="t", token_type="bearer", scope="scope", expires_at=0.0)
    sealed_with = set(sealing_context(TokenKey("app", "scope", "credential"), token))

    statements = resources["TokenKey"]["Properties"]["KeyPolicy"]["Statement"]
    crypto = {"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:ReEncryptFrom", "kms:ReEncryptTo",
              "kms:GenerateDataKey", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:*", "kms:Create*"}
    by_sid = {statement["Sid"]: statement for statement in statements}
    admin, use = by_sid["AccountAdministersTheKey"], by_sid["OnlyTheFunctionSealsAndUnsealsTokens"]
    assert set(by_sid) == {"AccountAdministersTheKey", "OnlyTheFunctionSealsAndUnsealsTokens"}
    assert all(statement["Effect"] == "Allow" for statement in statements)
    # The account (and through IAM, anyone it allows) administers, but no action that uses or grants the key.
    assert not crypto & set(_actions(admin)), _actions(admin)
    assert "kms:ScheduleKeyDeletion" in _actions(admin) and "kms:PutKeyPolicy" not in crypto
    # Only the function's role seals and unseals, and only with exactly the context the code seals with.
    assert use["Principal"] == {"AWS": {"GetAtt": "TokenVendingFunctionRole.Arn"}}
    assert set(_actions(use)) == {"kms:Encrypt", "kms:Decrypt"}
    condition = use["Condition"]
    assert set(condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == sealed_with
    assert set(condition["Null"]) == {"kms:EncryptionContext:app", "kms:EncryptionContext:scope",
                                      "kms:EncryptionContext:credential_id", "kms:EncryptionContext:holder",
                                      "kms:EncryptionContext:expires_at", "kms:EncryptionContext:stored_at"}
    assert set(condition["Null"].values()) == {"false"}


def test_the_token_table_has_deletion_protection_by_default(template: dict[str, Any],
                                                            resources: dict[str, Any]) -> None:
    assert resources["TokenTable"]["Properties"]["DeletionProtectionEnabled"] == {
        "If": ["HasTableDeletionProtection", True, False]}
    assert template["Parameters"]["TableDeletionProtection"]["Default"] == "true"


def test_the_token_url_must_be_https(template: dict[str, Any]) -> None:
    pattern = template["Parameters"]["TokenUrl"]["AllowedPattern"]
    assert re.fullmatch(pattern, template["Parameters"]["TokenUrl"]["Default"])
    for refused in ("http://auth.sangoma.com/oauth/token", "ftp://x/y", "https://", "https:// x/y", ""):
        assert not re.fullmatch(pattern, refused), refused


def test_minting_bounds_and_tracing_are_parameters(template: dict[str, Any], function: dict[str, Any]) -> None:
    variables = function["Environment"]["Variables"]
    assert variables["MIN_REPORT_AGE_SECONDS"] == {"Ref": "MinReportAgeSeconds"}
    assert variables["MAX_MINTS_PER_APP_PER_HOUR"] == {"Ref": "MaxMintsPerAppPerHour"}
    assert variables["MAX_MINTS_PER_CALLER_PER_HOUR"] == {"Ref": "MaxMintsPerCallerPerHour"}
    assert template["Parameters"]["MinReportAgeSeconds"]["Default"] == 60
    assert template["Parameters"]["MaxMintsPerAppPerHour"]["Default"] == 100
    assert template["Parameters"]["MaxMintsPerCallerPerHour"]["Default"] == 20
    # Detailed (Powertools) tracing is off unless asked for: it imports the X-Ray SDK at every cold start.
    assert variables["POWERTOOLS_TRACE_DISABLED"] == {"If": ["HasDetailedTracing", "false", "true"]}
    assert template["Parameters"]["DetailedTracing"]["Default"] == "false"


def test_snapstart_is_off_by_default_and_applies_to_the_published_alias(template: dict[str, Any],
                                                                       function: dict[str, Any]) -> None:
    assert template["Parameters"]["SnapStart"]["Default"] == "false"
    assert function["SnapStart"] == {"ApplyOn": {"If": ["UseSnapStart", "PublishedVersions", "None"]}}
    assert function["AutoPublishAlias"] == "live"  # what API Gateway and the schedule invoke


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
    fields = json.loads(re.sub(r"\$context\.[A-Za-z.]+", "x", log_format))
    assert fields["requestId"] == "x"
    assert '"path":"$context.path"' in log_format  # the path as sent, not only the route template
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


def _watched(alarm: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, metric) of every metric an alarm reads, its own or in a metric-math expression."""
    if "MetricName" in alarm:
        return {(alarm["Namespace"], alarm["MetricName"])}
    metrics = [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]
    return {(metric["Namespace"], metric["MetricName"]) for metric in metrics}


def test_alarms_cover_upstream_errors_5xx_prewarm_failures_function_errors_and_throttles(
        template: dict[str, Any], resources: dict[str, Any]) -> None:
    watched = {metric for alarm in _alarms(resources).values() for metric in _watched(alarm)}
    assert {(NAMESPACE, "UpstreamErrors"), ("AWS/ApiGateway", "5XXError"), (NAMESPACE, "PrewarmFailed"),
            ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), (NAMESPACE, "MintLimitReached")} <= watched
    topic = {"If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], NO_VALUE]}
    for alarm in _alarms(resources).values():
        assert alarm["AlarmActions"] == topic
        assert alarm["TreatMissingData"] == "notBreaching"
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    # The 5xx alarm watches this API by the name the template gives it.
    assert resources["VendingApi"]["Properties"]["Name"] == {"Ref": "AWS::StackName"}
    [api_alarm] = [alarm for alarm in _alarms(resources).values() if alarm.get("MetricName") == "5XXError"]
    assert {"Name": "ApiName", "Value": {"Ref": "AWS::StackName"}} in api_alarm["Dimensions"]


def _dashboard_metrics(resources: dict[str, Any]) -> list[tuple[str, str]]:
    body = resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Sub"]
    numbers = re.sub(r"(?<=: )\$\{[^}]+\}", "0", body)  # a parameter standing for a number: a budget line
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", numbers))["widgets"]
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
    for outcome in {"ok", *codes}:
        observability.record_vend(outcome)
    for outcome in {"dropped", "kept", *codes}:
        observability.record_report(outcome)
    for tier in ("memory", "table", "upstream"):
        observability.record_vend("ok", tier)
    for kind in ("ok", "unreachable", "unusable", "http_400", "http_401", "http_429", "http_500", "http_503"):
        observability.record_upstream(kind, 12.0)
    for dependency in ("dynamodb", "kms", "secretsmanager"):
        observability.record_degraded(dependency)
    observability.record_single_flight_wait()
    observability.record_prewarm({}, 86_400.0, 1)
    observability.record_mint_limit_reached()
    observability.record_unsealable_entry()
    counts, others = observability.take_metrics()
    return set(counts) | set(others)


def test_an_alarm_fires_when_the_shared_cache_is_degraded(resources: dict[str, Any]) -> None:
    alarm = _alarms(resources)["SharedCacheDegradedAlarm"]

    assert _watched(alarm) == {(NAMESPACE, "Degraded_kms"), (NAMESPACE, "Degraded_dynamodb")}
    [expression] = [query for query in alarm["Metrics"] if query.get("ReturnData")]
    assert expression["Expression"] == "FILL(dynamodb, 0) + FILL(kms, 0)"  # either one
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_dashboard_and_alarms_use_only_metrics_the_function_emits(resources: dict[str, Any]) -> None:
    emitted = _emittable_metric_names()
    ours = {name for namespace, name in _dashboard_metrics(resources) if namespace == NAMESPACE}
    ours |= {name for alarm in _alarms(resources).values() for namespace, name in _watched(alarm)
             if namespace == NAMESPACE}
    assert ours - emitted == set()
    # What an operator looks at first.
    for wanted in ("SoonestTokenExpiry", "PrewarmFailed", "UpstreamLatency", "Vend_ok", "CacheTier_memory",
                   "UpstreamRequests", "UpstreamErrors", "MintLimitReached"):
        assert wanted in ours


def test_the_dashboard_shows_mints_per_hour_beside_both_budgets(resources: dict[str, Any]) -> None:
    body = resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Sub"]
    unquoted = re.sub(r"(?<=: )\$\{([^}]+)\}", r'"\1"', body)  # a number: name its parameter
    [mints] = [widget for widget in json.loads(re.sub(r"\$\{[^}]+\}", "x", unquoted))["widgets"]
               if widget["properties"].get("annotations")]
    assert mints["properties"]["period"] == 3600 and mints["properties"]["metrics"][0][1] == "UpstreamRequests"
    budgets = {line["value"] for line in mints["properties"]["annotations"]["horizontal"]}
    assert budgets == {"MaxMintsPerAppPerHour", "MaxMintsPerCallerPerHour"}  # the stack's own parameters


def test_every_scan_suppression_says_why(resources: dict[str, Any]) -> None:
    for name, resource in resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), name
            assert len(skip.get("comment", "")) > 40, f"{name} {skip['id']} needs a reason"


def test_the_audit_queries_are_saved_in_the_stack_as_the_tools_run_them(resources: dict[str, Any]) -> None:
    from tools.audit_queries import QUERIES

    saved = {name: resource["Properties"] for name, resource in resources.items()
             if resource["Type"] == "AWS::Logs::QueryDefinition"}
    assert {name.removesuffix("Query") for name in saved} == set(QUERIES)
    for name, query in QUERIES.items():
        properties = saved[f"{name}Query"]
        assert properties["QueryString"] == query
        assert properties["Name"] == {"Sub": f"${{AWS::StackName}}/{name}"}
        assert properties["LogGroupNames"] == [{"Ref": "TokenVendingLogGroup"}]
        assert len(query) <= 10_000



def test_the_published_version_and_the_alias_follow_the_revision_make_deploy_sets(
        template: dict[str, Any], function: dict[str, Any]) -> None:
    revision = template["Parameters"]["Revision"]
    assert revision["Type"] == "String" and revision["Default"] == ""  # empty: SAM's own hash of the code
    for accepted in ("", "3f9c0a51d2e87b64", "0" * 64):
        assert re.fullmatch(revision["AllowedPattern"], accepted), accepted
    for refused in ("3F9C0A51D2E87B64", "3f9c-0a51d2e87b64", "3f9c0a51d", "0" * 65):  # a logical id's characters
        assert not re.fullmatch(revision["AllowedPattern"], refused), refused
    assert function["AutoPublishAlias"] == "live"
    assert function["AutoPublishCodeSha256"] == {"Ref": "Revision"}  # names the version SAM publishes
    assert function["VersionDescription"] == {"Ref": "Revision"}


LIVE_INVOCATIONS = ("arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                    "${TokenVendingFunctionAliaslive}/invocations")


def test_the_api_has_the_one_stage_v1_and_only_v1_may_invoke_the_alias(
        resources: dict[str, Any], function: dict[str, Any]) -> None:
    api = resources["VendingApi"]["Properties"]
    assert api["StageName"] == "v1"
    assert api["OpenApiVersion"] == "2.0"  # without it SAM adds a stage named Stage
    # No Api events: SAM's permissions for those admit every stage of the API.
    assert {event["Type"] for event in function["Events"].values()} == {"Schedule"}
    routes = api["DefinitionBody"]["paths"]
    assert set(routes) == {"/apps/{app}/token"}
    assert set(routes["/apps/{app}/token"]) == {"get", "delete"}
    for operation in routes["/apps/{app}/token"].values():
        integration = operation["x-amazon-apigateway-integration"]
        assert (integration["type"], integration["httpMethod"]) == ("aws_proxy", "POST")
        assert integration["uri"] == {"Sub": LIVE_INVOCATIONS}
    permissions = [resource["Properties"] for resource in resources.values()
                   if resource["Type"] == "AWS::Lambda::Permission"]
    source = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${VendingApi}/v1/%s/apps/*/token"
    assert sorted(permission["SourceArn"]["Sub"] for permission in permissions) == [source % "DELETE", source % "GET"]
    for permission in permissions:
        assert permission["FunctionName"] == {"Ref": "TokenVendingFunctionAliaslive"}
        assert permission["Principal"] == "apigateway.amazonaws.com"


def test_each_stack_names_its_own_layers(resources: dict[str, Any]) -> None:
    assert resources["DependenciesLayer"]["Properties"]["LayerName"] == {"Sub": "${AWS::StackName}-dependencies"}
    assert resources["ClientLayer"]["Properties"]["LayerName"] == {"Sub": "${AWS::StackName}-client"}
