"""Template tests: each resource and its security-relevant properties, for every stream, auth and rollout mode."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.image import API_HANDLER, STREAM_HANDLER
from infra.topology import POST_TRAFFIC_HANDLER, PRE_TRAFFIC_HANDLER
from lambda_fn.config import Env, Metric
from tests.infra.synth import OTHER_SHA, SHA, Synth

_TEMPLATES: dict[str, Template] = {}


def tpl(s: Synth) -> Template:
    if s.name not in _TEMPLATES:
        _TEMPLATES[s.name] = Template.from_json(s.template)
    return _TEMPLATES[s.name]


def functions(s: Synth) -> dict[str, dict[str, Any]]:
    """Function properties by handler."""
    return {
        p["ImageConfig"]["Command"][0]: p
        for p in (v["Properties"] for v in s.resources("AWS::Lambda::Function").values())
    }


def statements(s: Synth, role_prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for logical_id, res in s.resources("AWS::IAM::Policy").items():
        if logical_id.startswith(role_prefix):
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def actions(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return a if isinstance(a, list) else [a]


# --------------------------------------------------------------------------- model store


def test_model_bucket_is_versioned_encrypted_private_and_logged(default: Synth) -> None:
    t = tpl(default)
    t.resource_count_is("AWS::S3::Bucket", 2)
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "models/"},
        },
    )
    t.has_resource(
        "AWS::S3::Bucket",
        {"DeletionPolicy": "Retain", "Properties": Match.object_like({"VersioningConfiguration": Match.any_value()})},
    )


def test_every_bucket_and_queue_refuses_plain_http(default: Synth) -> None:
    deny_http = Match.array_with(
        [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
    )
    for type_, n in (("AWS::S3::BucketPolicy", 2), ("AWS::SQS::QueuePolicy", 2), ("AWS::SNS::TopicPolicy", 1)):
        policies = default.resources(type_)
        assert len(policies) == n
        for policy in policies.values():
            Template.from_json({"Resources": {"P": policy}}).has_resource_properties(
                type_, {"PolicyDocument": {"Statement": deny_http}}
            )


# --------------------------------------------------------------------------- streams and queues


def test_on_demand_streams_are_encrypted_with_retention(default: Synth) -> None:
    streams = default.resources("AWS::Kinesis::Stream")
    assert sorted(s["Properties"]["Name"] for s in streams.values()) == ["serving-dev-input", "serving-dev-predictions"]
    for stream in streams.values():
        props = stream["Properties"]
        assert props["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
        assert "ShardCount" not in props
        assert props["RetentionPeriodHours"] == 24
        assert props["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}


def test_provisioned_streams_take_shards_and_retention_from_context(provisioned: Synth) -> None:
    shards = {
        s["Properties"]["Name"]: s["Properties"]["ShardCount"]
        for s in provisioned.resources("AWS::Kinesis::Stream").values()
        if s["Properties"]["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
        and s["Properties"]["RetentionPeriodHours"] == 48
        and s["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
    }
    assert shards == {"serving-prod-input": 4, "serving-prod-predictions": 3}


def test_queues_are_encrypted_and_keep_messages_14_days(default: Synth) -> None:
    queues = default.resources("AWS::SQS::Queue")
    assert sorted(q["Properties"]["QueueName"] for q in queues.values()) == [
        "serving-dev-batch-failures",
        "serving-dev-dead-letters",
    ]
    for q in queues.values():
        assert q["Properties"]["SqsManagedSseEnabled"] is True
        assert q["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


# --------------------------------------------------------------------------- functions


def test_two_functions_from_one_image_with_their_own_handler_role_and_sizing(default: Synth) -> None:
    fns = functions(default)
    assert set(fns) == {STREAM_HANDLER, API_HANDLER, PRE_TRAFFIC_HANDLER, POST_TRAFFIC_HANDLER}  # hooks: test_hooks.py
    scorer, api = fns[STREAM_HANDLER], fns[API_HANDLER]
    assert scorer["Code"] == api["Code"]  # one image asset
    assert scorer["Role"] != api["Role"]
    for fn in (scorer, api):
        assert fn["PackageType"] == "Image"
        assert fn["Architectures"] == ["arm64"]
        assert fn["TracingConfig"] == {"Mode": "Active"}
        assert "LogGroup" in fn["LoggingConfig"]
    assert (scorer["MemorySize"], scorer["Timeout"], api["MemorySize"], api["Timeout"]) == (2048, 120, 1536, 29)
    assert "ReservedConcurrentExecutions" not in scorer
    # The API's access logs, both functions' and the four release hooks' logs.
    tpl(default).resource_properties_count_is("AWS::Logs::LogGroup", {"RetentionInDays": 30}, 7)


def test_sizing_architecture_and_concurrency_from_context(provisioned: Synth) -> None:
    scorer, api = functions(provisioned)[STREAM_HANDLER], functions(provisioned)[API_HANDLER]
    assert scorer["Architectures"] == api["Architectures"] == ["x86_64"]
    assert (scorer["MemorySize"], scorer["Timeout"], scorer["ReservedConcurrentExecutions"]) == (3008, 300, 20)
    tpl(provisioned).has_resource_properties(
        "AWS::Lambda::Alias", {"Name": "live", "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2}}
    )


def test_environment_is_built_from_lambda_fn_names(default: Synth) -> None:
    fns = functions(default)
    scorer = fns[STREAM_HANDLER]["Environment"]["Variables"]
    api = fns[API_HANDLER]["Environment"]["Variables"]
    common = {
        Env.MODEL_URI: "s3://example-models/taxi/1",
        Env.MODEL_SHA256: SHA,
        Env.FEATURES_FIELD: "ride",
        Env.ID_FIELD: "ride_id",
        Env.FEATURE_HOOK: "lambda_fn.hooks:taxi_features",
        Env.POWERTOOLS_SERVICE_NAME: "serving-dev",
        Env.POWERTOOLS_METRICS_NAMESPACE: Metric.NAMESPACE,
        Env.LOG_LEVEL: "INFO",
    }
    assert {k: scorer[k] for k in common} == common == {k: api[k] for k in common}
    assert set(scorer) - set(common) == {Env.OUTPUT_STREAM_NAME, Env.DLQ_URL}
    assert set(api) - set(common) == {Env.API_MAX_BODY_BYTES, Env.OMP_NUM_THREADS}
    assert api[Env.API_MAX_BODY_BYTES] == str(1024 * 1024)
    assert api[Env.OMP_NUM_THREADS] == "1"
    assert scorer[Env.OUTPUT_STREAM_NAME] == {
        "Ref": _logical_id(default, "AWS::Kinesis::Stream", "serving-dev-predictions")
    }


def test_rollout_models_reach_the_environment(rollout: Synth) -> None:
    for handler in (STREAM_HANDLER, API_HANDLER):
        env = functions(rollout)[handler]["Environment"]["Variables"]
        # model_key: inside the stack's own bucket, resolved at deploy time
        (bucket,) = rollout.resources("AWS::S3::Bucket").keys() - {_logs_bucket(rollout)}
        assert env[Env.MODEL_URI] == {"Fn::Join": ["", ["s3://", {"Ref": bucket}, "/models/taxi/2"]]}
        assert env[Env.SHADOW_MODEL_URI] == "s3://example-models/taxi/3"
        assert env[Env.SHADOW_MODEL_SHA256] == OTHER_SHA
        variants = json.loads(env[Env.MODEL_VARIANTS])
        assert [(v["name"], v["weight"], v["sha256"]) for v in variants] == [("a", 90, SHA), ("b", 10, OTHER_SHA)]


def _logs_bucket(s: Synth) -> str:
    (logs,) = [k for k, v in s.resources("AWS::S3::Bucket").items() if "LoggingConfiguration" not in v["Properties"]]
    return logs


def _logical_id(s: Synth, type_: str, name: str) -> str:
    (found,) = [k for k, v in s.resources(type_).items() if name in json.dumps(v["Properties"])]
    return found


# --------------------------------------------------------------------------- trigger


def test_event_source_mapping_on_live_alias_with_partial_batch_failures(default: Synth) -> None:
    (alias_id,) = [
        k
        for k, v in default.resources("AWS::Lambda::Alias").items()
        if "Scorer" in k and v["Properties"]["Name"] == "live"
    ]
    props = default.one("AWS::Lambda::EventSourceMapping")
    # The alias (function-name:live), never $LATEST: CodeDeploy decides which version consumes the stream.
    assert {"Ref": alias_id} in props["FunctionName"]["Fn::Join"][1][0]["Fn::Select"][1]["Fn::Split"]
    assert props["FunctionName"]["Fn::Join"][1][1] == ":live"
    assert props["EventSourceArn"] == {
        "Fn::GetAtt": [_logical_id(default, "AWS::Kinesis::Stream", "serving-dev-input"), "Arn"]
    }
    expected = {
        "BatchSize": 500,
        "MaximumBatchingWindowInSeconds": 1,
        "ParallelizationFactor": 1,
        "BisectBatchOnFunctionError": True,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MaximumRetryAttempts": 3,
        "MaximumRecordAgeInSeconds": 3600,
        "StartingPosition": "TRIM_HORIZON",
    }
    assert {k: props[k] for k in expected} == expected
    failures = _logical_id(default, "AWS::SQS::Queue", "serving-dev-batch-failures")
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [failures, "Arn"]}}}


def test_infinite_retries_and_age_omit_the_limits(provisioned: Synth) -> None:
    props = provisioned.one("AWS::Lambda::EventSourceMapping")
    assert "MaximumRetryAttempts" not in props and "MaximumRecordAgeInSeconds" not in props


# --------------------------------------------------------------------------- API


def _routes() -> set[tuple[str, str]]:
    from infra.api import api_routes

    return set(api_routes())


def _method_paths(s: Synth) -> dict[tuple[str, str], dict[str, Any]]:
    resources = s.resources("AWS::ApiGateway::Resource")

    def path(ref: dict[str, Any]) -> str:
        if "Fn::GetAtt" in ref:
            return ""
        res = resources[ref["Ref"]]["Properties"]
        return path(res["ParentId"]) + "/" + str(res["PathPart"])

    return {
        (m["Properties"]["HttpMethod"], path(m["Properties"]["ResourceId"])): m["Properties"]
        for m in s.resources("AWS::ApiGateway::Method").values()
    }


def test_api_declares_exactly_the_function_routes(default: Synth) -> None:
    assert set(_method_paths(default)) == _routes()
    assert ("POST", "/predict") in _routes() and ("POST", "/invocations") in _routes()


def test_api_key_mode_requires_a_key_on_every_route_with_a_throttled_usage_plan(default: Synth) -> None:
    for (method, _), props in _method_paths(default).items():
        assert props["ApiKeyRequired"] is True and props["AuthorizationType"] == "NONE"
        assert "RequestValidatorId" in props
        if method == "POST":
            assert set(props["RequestModels"]) == {"application/json"}
    t = tpl(default)
    t.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    t.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Throttle": {"RateLimit": 100, "BurstLimit": 200}, "Quota": {"Limit": 1_000_000, "Period": "DAY"}},
    )
    t.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True, "ValidateRequestParameters": True}
    )


def test_iam_mode_signs_every_route_and_offers_an_invoke_policy(provisioned: Synth) -> None:
    for props in _method_paths(provisioned).values():
        assert props["AuthorizationType"] == "AWS_IAM" and not props.get("ApiKeyRequired")
    t = tpl(provisioned)
    t.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    t.resource_count_is("AWS::ApiGateway::UsagePlan", 0)
    policy = provisioned.one("AWS::IAM::ManagedPolicy")
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke" and len(statement["Resource"]) == len(_routes())
    assert "ApiInvokePolicyArn" in provisioned.template["Outputs"]


def test_stage_has_access_logs_throttling_tracing_and_no_body_logging(default: Synth) -> None:
    stage = default.one("AWS::ApiGateway::Stage")
    assert stage["StageName"] == "dev" and stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"] and "requestId" in stage["AccessLogSetting"]["Format"]
    (settings,) = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 100 and settings["ThrottlingBurstLimit"] == 200
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False


# --------------------------------------------------------------------------- release


@pytest.mark.parametrize(
    ("variant", "config"),
    [
        ("default", "CodeDeployDefault.LambdaCanary10Percent5Minutes"),
        ("provisioned", "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"),
        ("rollout", "CodeDeployDefault.LambdaAllAtOnce"),
        ("bluegreen", "CodeDeployDefault.LambdaAllAtOnce"),
    ],
)
def test_live_aliases_shift_with_the_chosen_rollout(variant: str, config: str, request: pytest.FixtureRequest) -> None:
    s: Synth = request.getfixturevalue(variant)
    groups = s.resources("AWS::CodeDeploy::DeploymentGroup")
    assert len(groups) == 2
    for group in groups.values():
        props = group["Properties"]
        assert props["DeploymentConfigName"] == config
        assert props["DeploymentStyle"] == {"DeploymentOption": "WITH_TRAFFIC_CONTROL", "DeploymentType": "BLUE_GREEN"}
        events = set(props["AutoRollbackConfiguration"]["Events"])
        assert {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"} <= events
        if s.context.get("alarms") == "false":
            assert props["AlarmConfiguration"] == {"Enabled": False} and "DEPLOYMENT_STOP_ON_ALARM" not in events
        else:
            assert "DEPLOYMENT_STOP_ON_ALARM" in events and len(props["AlarmConfiguration"]["Alarms"]) == 1
    aliases = [a["Properties"] for a in s.resources("AWS::Lambda::Alias").values()]
    assert [a["Name"] for a in aliases] == ["live", "live"]
    for alias_id, alias in s.resources("AWS::Lambda::Alias").items():
        assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"]["Ref"] in groups, alias_id


# --------------------------------------------------------------------------- monitoring


def test_alarms_cover_lag_errors_throttles_queues_and_api(default: Synth) -> None:
    names = {
        a["Properties"]["AlarmName"]: a["Properties"] for a in default.resources("AWS::CloudWatch::Alarm").values()
    }
    assert set(names) == {
        f"serving-dev-{n}"
        for n in (
            "IteratorAge",
            "ScorerErrors",
            "ScorerThrottles",
            "ApiErrors",
            "ApiThrottles",
            "DeadLetters",
            "DeadLettersRejected",
            "BatchFailures",
            "Api5xx",
            "ApiLatencyP99",
            "ScorerLiveErrors",
            "ApiLiveErrors",
        )
    }
    assert names["serving-dev-IteratorAge"]["MetricName"] == "IteratorAge"
    assert names["serving-dev-IteratorAge"]["Threshold"] == 300_000
    assert names["serving-dev-ApiLatencyP99"]["ExtendedStatistic"] == "p99"
    assert names["serving-dev-DeadLetters"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    rejected = names["serving-dev-DeadLettersRejected"]
    assert (rejected["Namespace"], rejected["MetricName"], rejected["Threshold"]) == (
        Metric.NAMESPACE,
        Metric.DEAD_LETTERS_REJECTED,
        1,
    )
    assert rejected["Dimensions"] == [{"Name": "service", "Value": "serving-dev"}]
    topic = _logical_id(default, "AWS::SNS::Topic", "serving-dev alarms")
    assert all(a["AlarmActions"] == [{"Ref": topic}] for a in names.values())
    default.one("AWS::KMS::Key", EnableKeyRotation=True)
    assert "KmsMasterKeyId" in default.one("AWS::SNS::Topic")


def test_alarms_can_be_turned_off(provisioned: Synth) -> None:
    assert not provisioned.resources("AWS::CloudWatch::Alarm")
    assert not provisioned.resources("AWS::SNS::Topic")


def test_alarm_email_subscribes_to_the_topic(rollout: Synth) -> None:
    tpl(rollout).has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})


def test_dashboard_shows_the_kits_own_metrics(default: Synth) -> None:
    body = json.dumps(default.one("AWS::CloudWatch::Dashboard", DashboardName="serving-dev")["DashboardBody"])
    for name in (Metric.RECORDS_SCORED, Metric.RECORDS_DEAD_LETTERED, Metric.BATCH_LATENCY, Metric.PREDICT_LATENCY):
        assert f'\\"{Metric.NAMESPACE}\\",\\"{name}\\",\\"service\\",\\"serving-dev\\"' in body, name


def test_outputs(default: Synth) -> None:
    assert {
        "InputStreamName",
        "OutputStreamName",
        "ApiUrl",
        "ModelBucketName",
        "DeadLetterQueueUrl",
        "DashboardName",
        "ApiKeyId",
        "AlarmTopicArn",
    } <= set(default.template["Outputs"])


# --------------------------------------------------------------------------- IAM least privilege


def test_no_wildcard_resource_except_xray_and_log_group_lookup(every: Synth) -> None:
    for logical_id, res in {
        **every.resources("AWS::IAM::Policy"),
        **every.resources("AWS::IAM::ManagedPolicy"),
    }.items():
        for st in res["Properties"]["PolicyDocument"]["Statement"]:
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            if "*" in resources:
                # The only actions without resource-level permissions that the stack needs: X-Ray, the
                # lookup EMR Serverless makes of its log group (batch scoring, opt-in), and the metrics the
                # post-traffic hook reads (GetMetricData).
                assert set(actions(st)) in (
                    {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
                    {"cloudwatch:GetMetricData", "xray:PutTraceSegments", "xray:PutTelemetryRecords"},
                    {"logs:DescribeLogGroups"},
                ), logical_id
            assert not any(a.endswith(":*") or a == "*" for a in actions(st)), logical_id
    for role in every.resources("AWS::IAM::Role").values():
        arns = json.dumps(role["Properties"].get("ManagedPolicyArns", []))
        assert "AdministratorAccess" not in arns and "FullAccess" not in arns


def test_api_function_cannot_touch_streams_or_queues(default: Synth) -> None:
    api_actions = {a for st in statements(default, "ApiFunctionRole") for a in actions(st)}
    assert api_actions and not {a for a in api_actions if a.startswith(("kinesis:", "sqs:"))}
    assert {"s3:GetObject", "s3:ListBucket"} <= api_actions and "s3:PutObject" not in api_actions


def test_scorer_writes_only_the_output_stream_and_dlq(default: Synth) -> None:
    out = _logical_id(default, "AWS::Kinesis::Stream", "serving-dev-predictions")
    dlq = _logical_id(default, "AWS::SQS::Queue", "serving-dev-dead-letters")
    for st in statements(default, "ScorerRole"):
        if "kinesis:PutRecords" in actions(st):
            assert st["Resource"] == {"Fn::GetAtt": [out, "Arn"]}
        if "sqs:SendMessage" in actions(st):
            assert {"Fn::GetAtt": [dlq, "Arn"]} in st["Resource"]


def test_model_read_is_limited_to_the_served_artifacts(rollout: Synth) -> None:
    reads = [st for st in statements(rollout, "ScorerRole") if "s3:GetObject" in actions(st)]
    (read,) = reads
    text = json.dumps(read["Resource"])
    for key in (
        "/models/taxi/2",
        ":s3:::example-models/taxi/3",
        ":s3:::example-models/taxi/1",
        ":s3:::ab-models/taxi/4/model.skops",
    ):
        assert key in text, key
    listing = [st for st in statements(rollout, "ScorerRole") if actions(st) == ["s3:ListBucket"]]
    assert all(st["Condition"]["StringLike"]["s3:prefix"] for st in listing) and len(listing) == 3


def test_gateway_answers_in_the_functions_error_shape(default: Synth, provisioned: Synth) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in default.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "BAD_REQUEST_BODY", "THROTTLED", "MISSING_AUTHENTICATION_TOKEN"} <= set(
        responses
    )
    unknown = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert unknown["StatusCode"] == "404"
    body = json.loads(unknown["ResponseTemplates"]["application/json"].replace("$context.error.messageString", '"m"'))
    assert body == {"error": {"code": "not_found", "message": "m"}, "request_id": "$context.requestId"}
    # With IAM auth a missing token means an unsigned request: API Gateway's 403 stays.
    iam_types = {
        r["Properties"]["ResponseType"] for r in provisioned.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    assert "MISSING_AUTHENTICATION_TOKEN" not in iam_types and "DEFAULT_4XX" in iam_types


def test_shadow_predictions_get_their_own_stream_written_by_the_scorer_only(rollout: Synth, default: Synth) -> None:
    assert len(default.resources("AWS::Kinesis::Stream")) == 2  # no shadow configured, no shadow stream
    shadow = _logical_id(rollout, "AWS::Kinesis::Stream", "serving-qa-shadow-predictions")
    props = rollout.resources("AWS::Kinesis::Stream")[shadow]["Properties"]
    assert props["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    fns = functions(rollout)
    assert fns[STREAM_HANDLER]["Environment"]["Variables"][Env.SHADOW_OUTPUT_STREAM_NAME] == {"Ref": shadow}
    assert fns[STREAM_HANDLER]["Environment"]["Variables"][Env.SHADOW_TIMEOUT_MS] == "500"
    assert Env.SHADOW_OUTPUT_STREAM_NAME not in fns[API_HANDLER]["Environment"]["Variables"]
    (write,) = [st for st in statements(rollout, "ScorerRole") if "kinesis:PutRecords" in actions(st)]
    output = _logical_id(rollout, "AWS::Kinesis::Stream", "serving-qa-predictions")
    assert write["Resource"] == [{"Fn::GetAtt": [output, "Arn"]}, {"Fn::GetAtt": [shadow, "Arn"]}]
    assert not [st for st in statements(rollout, "ApiFunctionRole") if "kinesis:PutRecords" in actions(st)]
    assert rollout.template["Outputs"]["ShadowStreamName"]["Value"] == {"Ref": shadow}


def test_batch_scoring_is_opt_in_and_scoped_to_the_model_bucket(default: Synth, rollout: Synth) -> None:
    assert default.resources("AWS::EMRServerless::Application") == {}
    app = rollout.one("AWS::EMRServerless::Application")
    assert app["Type"].lower() == "spark"
    policies = json.dumps(rollout.resources("AWS::IAM::Policy"))
    assert "batch/input/" in policies and "batch/output/" in policies
