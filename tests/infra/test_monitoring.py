"""Prediction monitoring in the stack (issue 14): off by default and then absent; on, each resource, grant and alarm."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.environment import (  # the runtime's names and parsers, as the environments are built and checked
    CaptureTarget,
    Env,
    LabelsEnv,
    Metric,
    MonitorEnv,
    api_environment,
    labels_environment,
    labels_settings_from,
    monitor_environment,
    monitor_settings_from,
    scorer_environment,
    settings_from,
)
from infra.image import API_HANDLER, STREAM_HANDLER
from infra.settings import deploy_settings
from infra.topology import (
    CAPTURE_DIR,
    CAPTURE_ERRORS_METRIC,
    HOURLY_DIR,
    LABELS_DIR,
    LABELS_HANDLER,
    MONITOR_HANDLER,
    POST_TRAFFIC_HANDLER,
    PRE_TRAFFIC_HANDLER,
    PRIMARY_VARIANT,
    PROFILES_DIR,
    PSI_ALERT,
    PSI_WARN,
    REPORTS_DIR,
    CaptureEnv,
    Ctx,
    TopologyError,
)
from tests.infra.synth import BASE, MONITORED, MONITORED_BASE, OTHER_SHA, REF_SHA, SHA, Synth

REFERENCE = "s3://example-models/taxi/1/reference.json"
CAPTURE_NAMES = {
    CaptureEnv.CAPTURE_BUCKET,
    CaptureEnv.CAPTURE_PREFIX,
    CaptureEnv.CAPTURE_SAMPLE_RATE,
    CaptureEnv.CAPTURE_PAYLOAD,
    CaptureEnv.MONITOR_REFERENCE_URI,
    CaptureEnv.MONITOR_REFERENCE_SHA256,
}


# --------------------------------------------------------------------------- helpers


def render(node: Any) -> str:
    """A template value as text: Ref -> <Id>, GetAtt -> <Id.Attr>, Join concatenated (enough to read ARNs)."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and "Ref" in node:
        return f"<{node['Ref']}>"
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        return "<{}.{}>".format(*node["Fn::GetAtt"])
    if isinstance(node, dict) and "Fn::Join" in node:
        sep, parts = node["Fn::Join"]
        return str(sep).join(render(p) for p in parts)
    return json.dumps(node)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def one_id(s: Synth, type_: str, prefix: str) -> str:
    (found,) = [k for k in s.resources(type_) if k.startswith(prefix)]
    return found


def role_statements(s: Synth, role_id: str) -> list[dict[str, Any]]:
    """Every statement of every policy attached to the role."""
    out: list[dict[str, Any]] = []
    for res in s.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in res["Properties"]["Roles"]:
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def by_action(statements: list[dict[str, Any]]) -> dict[str, list[str]]:
    """action -> the resources it is allowed on (rendered)."""
    out: dict[str, list[str]] = {}
    for st in statements:
        assert st["Effect"] == "Allow"
        for action in as_list(st["Action"]):
            out.setdefault(action, []).extend(render(r) for r in as_list(st["Resource"]))
    return out


def functions(s: Synth) -> dict[str, dict[str, Any]]:
    return {
        p["ImageConfig"]["Command"][0]: p
        for p in (v["Properties"] for v in s.resources("AWS::Lambda::Function").values())
    }


def bucket_id(s: Synth) -> str:
    return one_id(s, "AWS::S3::Bucket", "ModelMonitorBucket")


def alarms(s: Synth) -> dict[str, dict[str, Any]]:
    return {a["Properties"]["AlarmName"]: a["Properties"] for a in s.resources("AWS::CloudWatch::Alarm").values()}


# --------------------------------------------------------------------------- off by default


def test_monitoring_off_adds_nothing(every: Synth) -> None:
    assert not every.resources("AWS::Scheduler::Schedule")
    assert not every.resources("AWS::SecretsManager::Secret")
    assert not [k for k in every.template["Resources"] if k.startswith("ModelMonitor")]
    assert MONITOR_HANDLER not in functions(every)
    for fn in functions(every).values():
        env = fn["Environment"]["Variables"]
        assert not {k for k in env if k.startswith(("CAPTURE_", "MONITOR_"))}
    assert not {a for a in alarms(every) if "Drift" in a or "Quality" in a or "Monitor" in a}
    assert "MonitoringBucketName" not in every.template["Outputs"]


def test_monitoring_false_with_every_other_key_gives_the_default_template(default: Synth, tmp_path: Path) -> None:
    """The keys are validated whenever given, but only monitoring=true creates anything."""
    from infra.stack import build_app

    drop = ("stage", "shadow_model_uri", "shadow_model_sha256", "model_variants", "model_name")
    context = {k: v for k, v in MONITORED["monitored_ab"].items() if k not in drop} | {"monitoring": "false"}
    (stack,) = build_app(context, outdir=str(tmp_path)).synth().stacks
    assert stack.template == default.template


# --------------------------------------------------------------------------- the bucket


def test_monitoring_bucket_is_encrypted_private_logged_and_expires_by_prefix(monitored: Synth) -> None:
    res = monitored.template["Resources"][bucket_id(monitored)]
    assert res["DeletionPolicy"] == "Retain"
    props = res["Properties"]
    assert props["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    logs = one_id(monitored, "AWS::S3::Bucket", "ModelStoreAccessLogs")
    assert props["LoggingConfiguration"] == {"DestinationBucketName": {"Ref": logs}, "LogFilePrefix": "monitoring/"}
    assert "VersioningConfiguration" not in props  # capture is append-only and expires
    assert props["LifecycleConfiguration"]["Rules"] == [
        {"Id": "capture", "Prefix": "monitoring/capture/", "ExpirationInDays": 30, "Status": "Enabled"},
        {"Id": "profiles", "Prefix": "monitoring/profiles/", "ExpirationInDays": 30, "Status": "Enabled"},
        {"Id": "profiles-hourly", "Prefix": "monitoring/profiles-hourly/", "ExpirationInDays": 30, "Status": "Enabled"},
        {"Id": "reports", "Prefix": "monitoring/reports/", "ExpirationInDays": 365, "Status": "Enabled"},
        {"Id": "labels", "Prefix": "monitoring/labels/", "ExpirationInDays": 30, "Status": "Enabled"},
        {"Id": "multipart", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}, "Status": "Enabled"},
    ]
    (policy,) = [
        p["Properties"]
        for p in monitored.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id(monitored)}
    ]
    assert {
        "Effect": "Deny",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }.items() <= policy["PolicyDocument"]["Statement"][0].items()


def test_lifecycle_follows_the_context(monitored_ab: Synth) -> None:
    rules = monitored_ab.template["Resources"][bucket_id(monitored_ab)]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {r["Id"]: r.get("ExpirationInDays") for r in rules} == {
        "capture": 7,
        "profiles": 7,
        "profiles-hourly": 7,
        "reports": 90,
        "labels": 14,
        "multipart": None,
    }


# --------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize(
    ("variant", "rate", "age"), [("monitored", "rate(15 minutes)", 900), ("monitored_ab", "rate(5 minutes)", 300)]
)
def test_schedule_invokes_the_monitor_at_the_rate_with_its_own_role(
    variant: str, rate: str, age: int, request: pytest.FixtureRequest
) -> None:
    s: Synth = request.getfixturevalue(variant)
    props = s.one("AWS::Scheduler::Schedule")
    monitor = one_id(s, "AWS::Lambda::Function", "ModelMonitorFunction")
    role = one_id(s, "AWS::IAM::Role", "ModelMonitorSchedulerRole")
    assert props["ScheduleExpression"] == rate and props["State"] == "ENABLED"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [monitor, "Arn"]}
    assert target["RoleArn"] == {"Fn::GetAtt": [role, "Arn"]}
    assert json.loads(target["Input"]) == {"at": "<aws.scheduler.scheduled-time>"}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": age, "MaximumRetryAttempts": 2}


def test_scheduler_role_may_only_invoke_the_monitor(monitored: Synth) -> None:
    role = one_id(monitored, "AWS::IAM::Role", "ModelMonitorSchedulerRole")
    trust = monitored.template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    (statement,) = trust
    assert statement["Principal"] == {"Service": "scheduler.amazonaws.com"}
    (condition,) = statement["Condition"].values()  # StringEquals only
    assert condition["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert render(condition["aws:SourceArn"]) == (
        "arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule-group/default"
    )
    assert monitored.one("AWS::Scheduler::Schedule")["GroupName"] == "default"
    assert "ManagedPolicyArns" not in monitored.template["Resources"][role]["Properties"]
    monitor = one_id(monitored, "AWS::Lambda::Function", "ModelMonitorFunction")
    assert by_action(role_statements(monitored, role)) == {"lambda:InvokeFunction": [f"<{monitor}.Arn>"]}


# --------------------------------------------------------------------------- the monitor function


def test_monitor_runs_the_same_image_with_its_handler_and_environment(monitored: Synth) -> None:
    fns = functions(monitored)
    assert set(fns) == {STREAM_HANDLER, API_HANDLER, MONITOR_HANDLER, PRE_TRAFFIC_HANDLER, POST_TRAFFIC_HANDLER}
    monitor = fns[MONITOR_HANDLER]
    assert monitor["Code"] == fns[STREAM_HANDLER]["Code"]  # one image asset, the CMD overridden
    assert (monitor["MemorySize"], monitor["Timeout"], monitor["Architectures"]) == (1024, 300, ["arm64"])
    assert monitor["TracingConfig"] == {"Mode": "Active"} and "LogGroup" in monitor["LoggingConfig"]
    env = monitor["Environment"]["Variables"]
    assert env == {
        MonitorEnv.MONITOR_BUCKET: {"Ref": bucket_id(monitored)},
        MonitorEnv.MONITOR_PREFIX: "monitoring",
        MonitorEnv.MONITOR_MODEL_NAME: "taxi",
        MonitorEnv.MONITOR_MODEL_SHA256: SHA,
        MonitorEnv.MONITOR_REFERENCE_URI: REFERENCE,
        MonitorEnv.MONITOR_REFERENCE_SHA256: REF_SHA,
        MonitorEnv.MONITOR_SHORT_WINDOW_MINUTES: "15",
        MonitorEnv.MONITOR_LONG_WINDOW_HOURS: "24",
        Env.POWERTOOLS_SERVICE_NAME: "serving-dev",
        Env.POWERTOOLS_METRICS_NAMESPACE: Metric.NAMESPACE,
        Env.LOG_LEVEL: "INFO",
    }
    parsed = monitor_settings_from({**env, MonitorEnv.MONITOR_BUCKET: "monitoring-bucket"})
    assert (parsed.monitor_model_name, parsed.monitor_reference_sha256) == ("taxi", REF_SHA)
    # No alias, no deployment group: the schedule invokes the function itself.
    assert len(monitored.resources("AWS::Lambda::Alias")) == 2
    assert {"MonitoringBucketName", "MonitorFunctionName", "MonitorReports"} <= set(monitored.template["Outputs"])


def test_monitor_windows_come_from_the_context(monitored_ab: Synth) -> None:
    env = functions(monitored_ab)[MONITOR_HANDLER]["Environment"]["Variables"]
    assert (env[MonitorEnv.MONITOR_SHORT_WINDOW_MINUTES], env[MonitorEnv.MONITOR_LONG_WINDOW_HOURS]) == ("5", "6")


def test_monitor_reads_profiles_and_the_reference_writes_reports_and_metrics_in_the_namespace(
    monitored: Synth,
) -> None:
    role = one_id(monitored, "AWS::IAM::Role", "ModelMonitorRole")
    statements = role_statements(monitored, role)
    bucket = f"<{bucket_id(monitored)}.Arn>"
    logs = one_id(monitored, "AWS::Logs::LogGroup", "ModelMonitorLogs")
    assert by_action(statements) == {
        "logs:CreateLogStream": [f"<{logs}.Arn>"],
        "logs:PutLogEvents": [f"<{logs}.Arn>"],
        "xray:PutTraceSegments": ["*"],
        "xray:PutTelemetryRecords": ["*"],
        "s3:ListBucket": [bucket],
        "s3:GetObject": [
            "arn:<AWS::Partition>:s3:::example-models/taxi/1/reference.json",
            f"{bucket}/monitoring/profiles-hourly/*",
            f"{bucket}/monitoring/profiles/*",
        ],
        "s3:PutObject": [f"{bucket}/monitoring/profiles-hourly/*", f"{bucket}/monitoring/reports/*"],
        "cloudwatch:PutMetricData": ["*"],
    }
    (listing,) = [st for st in statements if st["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": ["monitoring/profiles/*", "monitoring/profiles-hourly/*"]}
    }
    (metrics,) = [st for st in statements if st["Action"] == "cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": Metric.NAMESPACE}}


# --------------------------------------------------------------------------- model quality from late labels


def test_monitor_with_labels_gets_the_quality_settings_parsed_by_its_own_settings(monitored_ab: Synth) -> None:
    env = functions(monitored_ab)[MONITOR_HANDLER]["Environment"]["Variables"]
    assert {k: v for k, v in env.items() if k.startswith(("MONITOR_LABEL", "MONITOR_TRAINING"))} == {
        MonitorEnv.MONITOR_LABELS: "true",
        MonitorEnv.MONITOR_LABEL_DELAY_MINUTES: "30",
        MonitorEnv.MONITOR_LABEL_SPAN_MINUTES: "15",
        MonitorEnv.MONITOR_LABEL_TASK: "classification",
        MonitorEnv.MONITOR_TRAINING_METRICS: '{"accuracy":0.91,"auc":0.95,"f1":0.88}',
    }
    resolved = {
        **env,
        MonitorEnv.MONITOR_BUCKET: "kit-monitoring-bucket",
        MonitorEnv.MONITOR_ID_KEY_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:capture-key",
    }
    parsed = monitor_settings_from(resolved)
    assert parsed.monitor_labels and parsed.monitor_label_task == "classification"
    assert parsed.training_metrics() == {"accuracy": 0.91, "auc": 0.95, "f1": 0.88}
    assert (parsed.monitor_label_delay_minutes, parsed.monitor_label_span_minutes) == (30, 15)


def test_labels_off_by_default_and_the_runtime_defaults_when_on(monitored: Synth) -> None:
    env = functions(monitored)[MONITOR_HANDLER]["Environment"]["Variables"]
    assert not {k for k in env if k.startswith(("MONITOR_LABEL", "MONITOR_TRAINING", "MONITOR_ID_KEY"))}
    on = monitor_environment(deploy_settings({**MON, "monitoring_labels": "true"}), bucket="kit-bucket")
    parsed, runtime = monitor_settings_from(on), monitor_settings_from({**on, MonitorEnv.MONITOR_LABELS: "true"})
    defaults = monitor_settings_from({k: v for k, v in on.items() if "LABEL_" not in k})
    assert parsed == runtime and parsed.monitor_labels
    assert (parsed.monitor_label_delay_minutes, parsed.monitor_label_span_minutes, parsed.monitor_label_task) == (
        defaults.monitor_label_delay_minutes,
        defaults.monitor_label_span_minutes,
        defaults.monitor_label_task,
    )
    assert MonitorEnv.MONITOR_TRAINING_METRICS not in on  # no training metrics: no degradation ratio published


def test_monitor_with_labels_lists_and_reads_capture_and_labels_only(monitored_ab: Synth) -> None:
    role = one_id(monitored_ab, "AWS::IAM::Role", "ModelMonitorRole")
    statements = role_statements(monitored_ab, role)
    bucket = f"<{bucket_id(monitored_ab)}.Arn>"
    granted = by_action(statements)
    assert sorted(granted["s3:GetObject"]) == sorted(
        [
            "arn:<AWS::Partition>:s3:::example-models/taxi/1/reference.json",
            f"{bucket}/monitoring/profiles/*",
            f"{bucket}/monitoring/profiles-hourly/*",
            f"{bucket}/monitoring/capture/*",
            f"{bucket}/monitoring/labels/*",
        ]
    )
    # no write to labels or capture
    assert granted["s3:PutObject"] == [f"{bucket}/monitoring/profiles-hourly/*", f"{bucket}/monitoring/reports/*"]
    (listing,) = [st for st in statements if st["Action"] == "s3:ListBucket"]
    assert sorted(listing["Condition"]["StringLike"]["s3:prefix"]) == [
        "monitoring/capture/*",
        "monitoring/labels/*",
        "monitoring/profiles-hourly/*",
        "monitoring/profiles/*",
    ]


def test_labels_stream_is_encrypted_and_its_function_may_only_write_labels(
    monitored_ab: Synth, monitored: Synth
) -> None:
    assert LABELS_HANDLER not in functions(monitored) and "LabelsStreamName" not in monitored.template["Outputs"]
    stream_id = one_id(monitored_ab, "AWS::Kinesis::Stream", "ModelMonitorLabelStream")
    stream = monitored_ab.template["Resources"][stream_id]["Properties"]
    assert stream["Name"] == "serving-ab-labels" and stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert monitored_ab.template["Outputs"]["LabelsStreamName"]["Value"] == {"Ref": stream_id}

    fn = functions(monitored_ab)[LABELS_HANDLER]
    assert fn["Code"] == functions(monitored_ab)[STREAM_HANDLER]["Code"]  # the same image
    assert fn["TracingConfig"] == {"Mode": "Active"}
    env = fn["Environment"]["Variables"]
    assert {k: v for k, v in env.items() if k.startswith("LABELS_")} == {
        LabelsEnv.LABELS_BUCKET: {"Ref": bucket_id(monitored_ab)},
        LabelsEnv.LABELS_PREFIX: "monitoring",
    }
    assert labels_settings_from({**env, LabelsEnv.LABELS_BUCKET: "kit-bucket"}).labels_prefix == "monitoring"

    role = one_id(monitored_ab, "AWS::IAM::Role", "ModelMonitorLabelStreamLabelsRole")
    queue = one_id(monitored_ab, "AWS::SQS::Queue", "ModelMonitorLabelStreamFailures")
    logs = one_id(monitored_ab, "AWS::Logs::LogGroup", "ModelMonitorLabelStreamLabelsLogs")
    granted = by_action(role_statements(monitored_ab, role))
    assert granted.pop("s3:PutObject") == [f"<{bucket_id(monitored_ab)}.Arn>/monitoring/labels/*"]
    assert {a for a in granted if a.startswith("s3:") or a.startswith("secretsmanager:")} == set()
    assert {a: r for a, r in granted.items() if a.startswith("kinesis:")} and all(
        r == [f"<{stream_id}.Arn>"] for a, r in granted.items() if a.startswith("kinesis:")
    )
    assert granted["sqs:SendMessage"] == [f"<{queue}.Arn>"]
    assert granted["logs:PutLogEvents"] == [f"<{logs}.Arn>"]
    kinesis_reads = {a for a in granted if a.split(":")[1].startswith(("Describe", "Get", "List", "Subscribe"))}
    others = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    assert set(granted) == others | {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"} | kinesis_reads
    q = monitored_ab.template["Resources"][queue]["Properties"]
    assert q["SqsManagedSseEnabled"] is True and q["QueueName"] == "serving-ab-labels-failures"


def test_labels_event_source_reports_item_failures_and_keeps_failed_batches(monitored_ab: Synth) -> None:
    fn = one_id(monitored_ab, "AWS::Lambda::Function", "ModelMonitorLabelStreamLabelsFunction")
    (esm,) = [
        p
        for p in (v["Properties"] for v in monitored_ab.resources("AWS::Lambda::EventSourceMapping").values())
        if p["FunctionName"] == {"Ref": fn}
    ]
    queue = one_id(monitored_ab, "AWS::SQS::Queue", "ModelMonitorLabelStreamFailures")
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [queue, "Arn"]}}}
    assert esm["BisectBatchOnFunctionError"] is False  # a malformed record is dropped, never fails alone
    assert (esm["MaximumRetryAttempts"], esm["MaximumRecordAgeInSeconds"], esm["StartingPosition"]) == (
        10,
        21600,
        "TRIM_HORIZON",
    )


def _gated_alarm(s: Synth, name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str]:
    """The alarm, its metric-math inputs by id (each metric's MetricStat) and its expression."""
    a = alarms(s)[name]
    assert not {"MetricName", "Namespace", "Statistic"} & set(a)  # metric math, not one metric
    (expression,) = [m for m in a["Metrics"] if "Expression" in m]
    assert expression["ReturnData"] is True
    stats = {m["Id"]: m["MetricStat"] for m in a["Metrics"] if "MetricStat" in m}
    assert all(m.get("ReturnData") is False for m in a["Metrics"] if "MetricStat" in m)
    return a, stats, expression["Expression"]


def test_quality_degradation_alarm_needs_the_minimum_of_labelled_rows(monitored_ab: Synth, monitored: Synth) -> None:
    assert not {a for a in alarms(monitored) if "QualityDegradation" in a}
    a, stats, expression = _gated_alarm(monitored_ab, "serving-ab-QualityDegradation-a")
    assert expression == "IF(labelled >= 50, degradation, 0)"  # monitoring_quality_min_labels=50
    assert {k: v["Metric"]["MetricName"] for k, v in stats.items()} == {
        "degradation": Metric.QUALITY_DEGRADATION,
        "labelled": Metric.LABELLED_ROWS,
    }
    for stat in stats.values():
        assert stat["Metric"]["Namespace"] == Metric.NAMESPACE
        assert stat["Metric"]["Dimensions"] == [{"Name": "model", "Value": "taxi"}, {"Name": "variant", "Value": "a"}]
        assert (stat["Stat"], stat["Period"]) == ("Maximum", 300)
    assert (a["Threshold"], a["ComparisonOperator"], a["TreatMissingData"], a["EvaluationPeriods"]) == (
        1.5,
        "GreaterThanThreshold",
        "notBreaching",
        1,
    )
    topic = one_id(monitored_ab, "AWS::SNS::Topic", "MonitoringAlarms")
    assert a["AlarmActions"] == a["OKActions"] == [{"Ref": topic}]
    assert "/monitoring/reports/model=taxi/" in render(a["AlarmDescription"])
    assert "at least 50 labelled rows" in render(a["AlarmDescription"])
    body = render(monitored_ab.one("AWS::CloudWatch::Dashboard", DashboardName="serving-ab")["DashboardBody"])
    assert f'MetricName=\\"{Metric.MODEL_QUALITY}\\" model=\\"taxi\\"' in body
    for name in (Metric.QUALITY_DEGRADATION, Metric.LABELLED_ROWS):
        assert f'"{Metric.NAMESPACE}","{name}","model","taxi","variant","a"' in body, name
    assert '"value":1.5' in body
    plain = render(monitored.one("AWS::CloudWatch::Dashboard", DashboardName="serving-dev")["DashboardBody"])
    assert Metric.LABELLED_ROWS not in plain


def test_quality_degradation_alarm_evaluated_in_process(monitored_ab: Synth) -> None:
    """The synthesized alarm's rule on datapoints as the monitor publishes them (moto never evaluates alarms): a
    large ratio on few labels stays OK, a ratio above the threshold on enough labels alarms."""
    from datetime import UTC, datetime, timedelta

    from servingkit.monitor_alarm import AlarmRule, first_alarm, gated

    a, stats, expression = _gated_alarm(monitored_ab, "serving-ab-QualityDegradation-a")
    match = re.fullmatch(r"IF\((\w+) >= (\d+), (\w+), 0\)", expression)
    assert match is not None
    gate, minimum, value = match.group(1), int(match.group(2)), match.group(3)
    assert stats[gate]["Metric"]["MetricName"] == Metric.LABELLED_ROWS
    assert stats[value]["Metric"]["MetricName"] == Metric.QUALITY_DEGRADATION
    period = timedelta(seconds=stats[value]["Period"])
    rule = AlarmRule(period, threshold=a["Threshold"], strict=a["ComparisonOperator"] == "GreaterThanThreshold")
    t0 = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    runs = [t0 + period * i for i in range(4)]
    ratio = list(zip(runs, [9.0, 9.0, 1.4, 1.6], strict=True))
    labelled = list(zip(runs, [3.0, minimum - 1.0, 500.0, float(minimum)], strict=True))
    series = gated(ratio, labelled, minimum, period)
    assert [v for _, v in series] == [0.0, 0.0, 1.4, 1.6]
    assert first_alarm(series, rule) == runs[3] + period  # 1.4 is under 1.5; 1.6 with exactly the minimum
    assert first_alarm(gated(ratio[:2], labelled[:2], minimum, period), rule) is None


def test_labels_failure_queue_has_an_alarm(monitored_ab: Synth, monitored: Synth) -> None:
    assert not {a for a in alarms(monitored) if "Labels" in a}
    a = alarms(monitored_ab)["serving-ab-LabelsBatchFailures"]
    queue = one_id(monitored_ab, "AWS::SQS::Queue", "ModelMonitorLabelStreamFailures")
    assert (a["Namespace"], a["MetricName"], a["Statistic"], a["Period"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
        60,
    )
    assert a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    assert (a["Threshold"], a["ComparisonOperator"], a["TreatMissingData"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
        "notBreaching",
    )
    topic = one_id(monitored_ab, "AWS::SNS::Topic", "MonitoringAlarms")
    assert a["AlarmActions"] == a["OKActions"] == [{"Ref": topic}]
    assert "replay" in a["AlarmDescription"]


def test_default_degradation_ratio_is_1_2() -> None:
    m = deploy_settings({**MON, "monitoring_labels": "true"}).monitoring
    assert m is not None and m.quality_degradation_ratio == 1.2 and not m.labels_stream
    assert m.quality_min_labels == 100
    assert (m.label_days, m.training_metrics) == (m.capture_days, None)


# --------------------------------------------------------------------------- the serving functions


def _serving_roles(s: Synth) -> dict[str, str]:
    return {
        "scorer": one_id(s, "AWS::IAM::Role", "ScorerRole"),
        "api": one_id(s, "AWS::IAM::Role", "ApiFunctionRole"),
    }


def test_serving_functions_write_only_capture_and_profiles_and_read_the_reference(monitored: Synth) -> None:
    bucket = f"<{bucket_id(monitored)}.Arn>"
    for role in _serving_roles(monitored).values():
        granted = by_action(role_statements(monitored, role))
        assert granted["s3:PutObject"] == [f"{bucket}/monitoring/capture/*", f"{bucket}/monitoring/profiles/*"]
        assert "arn:<AWS::Partition>:s3:::example-models/taxi/1/reference.json" in granted["s3:GetObject"]
        assert not [r for rs in granted.values() for r in rs if r.startswith(bucket) and "/monitoring/" not in r]
        assert not {"s3:DeleteObject", "s3:ListBucket"} & {
            a for a, rs in granted.items() if any(bucket in r for r in rs)
        }
        assert "secretsmanager:GetSecretValue" not in granted  # ids not hashed: no secret


def test_id_hashing_creates_a_secret_only_the_serving_functions_read(monitored_ab: Synth, monitored: Synth) -> None:
    assert not monitored.resources("AWS::SecretsManager::Secret")
    secret_id = one_id(monitored_ab, "AWS::SecretsManager::Secret", "ModelMonitorIdKey")
    secret = monitored_ab.template["Resources"][secret_id]
    assert secret["Properties"]["GenerateSecretString"] == {
        "ExcludePunctuation": True,
        "IncludeSpace": False,
        "PasswordLength": 64,
    }
    assert secret["DeletionPolicy"] == "Retain"
    for role in _serving_roles(monitored_ab).values():
        assert by_action(role_statements(monitored_ab, role))["secretsmanager:GetSecretValue"] == [f"<{secret_id}>"]
    # The monitor reads it only because monitored_ab joins labels (label ids are hashed with capture's key).
    monitor_role = one_id(monitored_ab, "AWS::IAM::Role", "ModelMonitorRole")
    assert by_action(role_statements(monitored_ab, monitor_role))["secretsmanager:GetSecretValue"] == [f"<{secret_id}>"]
    env = functions(monitored_ab)[MONITOR_HANDLER]["Environment"]["Variables"]
    assert env[MonitorEnv.MONITOR_ID_KEY_SECRET_ARN] == {"Ref": secret_id}


def test_serving_environment_gets_exactly_the_capture_names(monitored: Synth, monitored_ab: Synth) -> None:
    for handler in (STREAM_HANDLER, API_HANDLER):
        env = functions(monitored)[handler]["Environment"]["Variables"]
        capture = {k: v for k, v in env.items() if k.startswith(("CAPTURE_", "MONITOR_"))}
        assert capture == {
            CaptureEnv.CAPTURE_BUCKET: {"Ref": bucket_id(monitored)},
            CaptureEnv.CAPTURE_PREFIX: "monitoring",
            CaptureEnv.CAPTURE_SAMPLE_RATE: "0.1",
            CaptureEnv.CAPTURE_PAYLOAD: "features",
            CaptureEnv.MONITOR_REFERENCE_URI: REFERENCE,
            CaptureEnv.MONITOR_REFERENCE_SHA256: REF_SHA,
        }
        ab = functions(monitored_ab)[handler]["Environment"]["Variables"]
        secret = one_id(monitored_ab, "AWS::SecretsManager::Secret", "ModelMonitorIdKey")
        assert {k: ab[k] for k in CAPTURE_NAMES - {CaptureEnv.CAPTURE_BUCKET}} | {
            k: ab[k] for k in (CaptureEnv.CAPTURE_ID_KEY_SECRET_ARN, CaptureEnv.CAPTURE_TIMEOUT_MS)
        } == {
            CaptureEnv.CAPTURE_PREFIX: "monitoring",
            CaptureEnv.CAPTURE_SAMPLE_RATE: "0.25",
            CaptureEnv.CAPTURE_PAYLOAD: "raw",
            CaptureEnv.MONITOR_REFERENCE_URI: REFERENCE,
            CaptureEnv.MONITOR_REFERENCE_SHA256: REF_SHA,
            CaptureEnv.CAPTURE_ID_KEY_SECRET_ARN: {"Ref": secret},
            CaptureEnv.CAPTURE_TIMEOUT_MS: "150",
        }


def test_no_wildcard_beyond_the_monitoring_prefixes(monitored: Synth, monitored_ab: Synth) -> None:
    """Every `*` in a monitored stack's policies: X-Ray and PutMetricData (no resource-level permissions; the latter
    held to the namespace), a served model's directory, or one of the three monitoring prefixes."""
    for s in (monitored, monitored_ab):
        for logical_id, res in s.resources("AWS::IAM::Policy").items():
            for st in res["Properties"]["PolicyDocument"]["Statement"]:
                assert not any(a.endswith(":*") or a == "*" for a in as_list(st["Action"])), logical_id
                for resource in (render(r) for r in as_list(st["Resource"])):
                    if resource == "*":
                        assert set(as_list(st["Action"])) in (
                            {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
                            # the post-traffic hook reads the alias's Errors (infra/deployments.py)
                            {"cloudwatch:GetMetricData", "xray:PutTraceSegments", "xray:PutTelemetryRecords"},
                            {"cloudwatch:PutMetricData"},
                        ), logical_id
                        if st["Action"] == "cloudwatch:PutMetricData":
                            assert st["Condition"]["StringEquals"]["cloudwatch:namespace"] == Metric.NAMESPACE
                    elif "*" in resource and "Traffic" in resource and "Deployment" in logical_id:
                        # CodeDeploy's role may invoke the release hooks' versions (CDK's grant; test_hooks.py)
                        assert re.fullmatch(r"<Release\w+TrafficFunction[0-9A-F]{8}\.Arn>:\*", resource), resource
                    elif "*" in resource:
                        assert resource.endswith(
                            (
                                "/monitoring/capture/*",
                                "/monitoring/profiles/*",
                                "/monitoring/reports/*",
                                "/monitoring/labels/*",
                                "/monitoring/profiles-hourly/*",
                                "/taxi/1/*",
                                "/taxi/3/*",
                                "/taxi/4/model.skops/*",
                            )
                        ), (logical_id, resource)
                        assert resource.count("*") == 1, (logical_id, resource)


# --------------------------------------------------------------------------- alarms and dashboard


def test_drift_quality_and_monitor_error_alarms(monitored: Synth) -> None:
    found = alarms(monitored)
    monitoring = {k: v for k, v in found.items() if k.split("-", 2)[-1].startswith(("Drifted", "Quality", "Monitor"))}
    assert set(monitoring) == {
        "serving-dev-DriftedFeatures-primary",
        "serving-dev-QualityViolations-primary",
        "serving-dev-MonitorErrors",
    }
    assert len(found) == 12 + 3  # the kit's own twelve stay
    topic = one_id(monitored, "AWS::SNS::Topic", "MonitoringAlarms")
    for name, metric in (
        ("DriftedFeatures", Metric.DRIFTED_FEATURES),
        ("QualityViolations", Metric.QUALITY_VIOLATIONS),
    ):
        a = monitoring[f"serving-dev-{name}-primary"]
        assert (a["Namespace"], a["MetricName"], a["Statistic"], a["Period"]) == (
            Metric.NAMESPACE,
            metric,
            "Maximum",
            900,
        )
        assert a["Dimensions"] == [{"Name": "model", "Value": "taxi"}, {"Name": "variant", "Value": PRIMARY_VARIANT}]
        assert (a["Threshold"], a["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert a["TreatMissingData"] == "notBreaching" and a["EvaluationPeriods"] == 1
        assert a["AlarmActions"] == a["OKActions"] == [{"Ref": topic}]
        assert f"/monitoring/reports/model=taxi/sha256={SHA}/" in render(a["AlarmDescription"])
    errors = monitoring["serving-dev-MonitorErrors"]
    monitor = one_id(monitored, "AWS::Lambda::Function", "ModelMonitorFunction")
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": monitor}}]
    assert errors["TreatMissingData"] == "notBreaching"


def test_alarms_per_variant_serving_the_referenced_model_with_context_thresholds(monitored_ab: Synth) -> None:
    found = alarms(monitored_ab)
    # Arm "b" serves another model (another reference) and the shadow has its own: only arm "a" is this release's.
    assert {k for k in found if "Drifted" in k or "Quality" in k} == {
        "serving-ab-DriftedFeatures-a",
        "serving-ab-QualityViolations-a",
        "serving-ab-QualityDegradation-a",  # labels on
    }
    assert found["serving-ab-DriftedFeatures-a"]["Threshold"] == 2
    assert found["serving-ab-QualityViolations-a"]["Threshold"] == 3
    assert found["serving-ab-DriftedFeatures-a"]["Period"] == 300
    assert found["serving-ab-MonitorErrors"]["Period"] == 300


def test_dashboard_shows_drift_quality_rows_and_capture_errors(monitored: Synth) -> None:
    body = render(monitored.one("AWS::CloudWatch::Dashboard", DashboardName="serving-dev")["DashboardBody"])
    assert (
        f'SEARCH(\'{{{Metric.NAMESPACE},feature,model,variant}} MetricName=\\"{Metric.DRIFT_SCORE}\\" '
        f"model=\\\"taxi\\\"', 'Maximum', 900)"
    ) in body
    for name in (Metric.DRIFTED_FEATURES, Metric.QUALITY_VIOLATIONS, Metric.MONITOR_ROWS):
        assert f'"{Metric.NAMESPACE}","{name}","model","taxi","variant","primary"' in body, name
    assert f'"{Metric.NAMESPACE}","{CAPTURE_ERRORS_METRIC}","service","serving-dev"' in body
    assert f'"value":{PSI_WARN}' in body and f'"value":{PSI_ALERT}' in body
    assert '"title":"Monitoring alarms"' in body and '"title":"Alarms"' in body


def test_monitoring_alarms_follow_the_alarms_switch(tmp_path: Path) -> None:
    from infra.stack import build_app

    template = build_app({**MONITORED_BASE, "alarms": "false"}, outdir=str(tmp_path)).synth().stacks[0].template
    assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert [r for r in template["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"]


# --------------------------------------------------------------------------- cdk-nag


@pytest.mark.parametrize("variant", list(MONITORED))
def test_monitored_stack_passes_awssolutions(variant: str, request: pytest.FixtureRequest) -> None:
    s: Synth = request.getfixturevalue(variant)
    report = json.loads((s.outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == []
    acknowledged = {
        rule["id"]: rule["reason"]
        for res in s.template["Resources"].values()
        for rule in res.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    }
    assert all(len(reason) > 40 for reason in acknowledged.values())
    prefixes = {rule.split("/monitoring/")[-1] for rule in acknowledged if "/monitoring/" in rule}
    labels = {"labels/*]"} if s.context.get("monitoring_labels") == "true" else set()
    assert prefixes == {"capture/*]", "profiles/*]", "profiles-hourly/*]", "reports/*]"} | labels
    if s.context.get("monitoring_hash_ids") == "true":
        assert "AwsSolutions-SMG4" in acknowledged


# --------------------------------------------------------------------------- settings


def test_monitoring_defaults_and_context() -> None:
    assert deploy_settings(BASE).monitoring is None
    m = deploy_settings(MONITORED_BASE).monitoring
    assert m is not None
    assert (m.sample_rate, m.payload, m.hash_ids, m.capture_timeout_ms) == (0.1, "features", False, None)
    assert (m.schedule_minutes, m.short_window_minutes, m.long_window_hours) == (15, 15, 24)
    assert (m.capture_days, m.report_days, m.drift_alarm_features, m.quality_alarm_violations) == (30, 365, 1, 1)
    assert (m.reference.uri, m.reference.sha256, m.model_name, m.variants) == (REFERENCE, REF_SHA, "taxi", ("primary",))
    ab = deploy_settings(MONITORED["monitored_ab"]).monitoring
    assert ab is not None and ab.variants == ("a",) and ab.hash_ids and ab.payload == "raw"


MON = MONITORED_BASE


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({**MON, "monitoring": "sometimes"}, Ctx.MONITORING),
        ({k: v for k, v in MON.items() if k != "model_reference_uri"}, Ctx.MODEL_REFERENCE_URI),
        ({k: v for k, v in MON.items() if k != "model_reference_sha256"}, Ctx.MODEL_REFERENCE_SHA256),
        ({**MON, "model_reference_sha256": "abc"}, Ctx.MODEL_REFERENCE_SHA256),
        ({**MON, "model_reference_uri": "https://example.com/reference.json"}, Ctx.MODEL_REFERENCE_URI),
        ({**MON, "model_reference_uri": "s3://example-models/taxi/1/"}, Ctx.MODEL_REFERENCE_URI),
        ({k: v for k, v in MON.items() if k != "model_name"}, Ctx.MODEL_NAME),
        ({**MON, "monitoring_sample_rate": 1.5}, Ctx.MONITORING_SAMPLE_RATE),
        ({**MON, "monitoring_sample_rate": -0.1}, Ctx.MONITORING_SAMPLE_RATE),
        ({**MON, "monitoring_sample_rate": "often"}, Ctx.MONITORING_SAMPLE_RATE),
        ({**MON, "monitoring_sample_rate": "nan"}, Ctx.MONITORING_SAMPLE_RATE),
        ({**MON, "monitoring_sample_rate": True}, Ctx.MONITORING_SAMPLE_RATE),
        ({**BASE, "monitoring_sample_rate": 2}, Ctx.MONITORING_SAMPLE_RATE),  # checked with monitoring off too
        ({**MON, "monitoring_payload": "json"}, Ctx.MONITORING_PAYLOAD),
        ({**MON, "monitoring_hash_ids": "maybe"}, Ctx.MONITORING_HASH_IDS),
        ({**MON, "monitoring_capture_timeout_ms": 0}, Ctx.MONITORING_CAPTURE_TIMEOUT_MS),
        ({**MON, "monitoring_schedule_minutes": 0}, Ctx.MONITORING_SCHEDULE_MINUTES),
        ({**MON, "monitoring_schedule_minutes": "quarter"}, Ctx.MONITORING_SCHEDULE_MINUTES),
        ({**MON, "monitoring_short_window_minutes": 0}, Ctx.MONITORING_SHORT_WINDOW_MINUTES),
        ({**MON, "monitoring_long_window_hours": 0}, Ctx.MONITORING_LONG_WINDOW_HOURS),
        (
            {**MON, "monitoring_long_window_hours": 1, "monitoring_short_window_minutes": 120},
            Ctx.MONITORING_LONG_WINDOW_HOURS,
        ),
        ({**MON, "monitoring_capture_days": 0}, Ctx.MONITORING_CAPTURE_DAYS),
        ({**MON, "monitoring_capture_days": 1, "monitoring_long_window_hours": 48}, Ctx.MONITORING_CAPTURE_DAYS),
        ({**MON, "monitoring_report_days": 0}, Ctx.MONITORING_REPORT_DAYS),
        ({**MON, "monitoring_drift_alarm_features": 0}, Ctx.MONITORING_DRIFT_ALARM_FEATURES),
        ({**MON, "monitoring_quality_alarm_violations": -1}, Ctx.MONITORING_QUALITY_ALARM_VIOLATIONS),
        (
            {**MON, "model_variants": json.dumps([{"name": "b", "uri": "s3://b/k", "sha256": OTHER_SHA, "weight": 1}])},
            Ctx.MODEL_VARIANTS,
        ),
        ({**MON, "monitoring_labels": "perhaps"}, Ctx.MONITORING_LABELS),
        ({**MON, "monitoring_label_delay_minutes": -1}, Ctx.MONITORING_LABEL_DELAY_MINUTES),
        ({**MON, "monitoring_label_span_minutes": 0}, Ctx.MONITORING_LABEL_SPAN_MINUTES),
        ({**MON, "monitoring_label_span_minutes": 24 * 60 + 1}, Ctx.MONITORING_LABEL_SPAN_MINUTES),
        ({**MON, "monitoring_label_task": "ranking"}, Ctx.MONITORING_LABEL_TASK),
        ({**MON, "monitoring_label_days": 0}, Ctx.MONITORING_LABEL_DAYS),
        ({**MON, "monitoring_label_days": 1, "monitoring_label_delay_minutes": 2000}, Ctx.MONITORING_LABEL_DAYS),
        ({**MON, "monitoring_labels_stream": "true"}, Ctx.MONITORING_LABELS_STREAM),  # without monitoring_labels
        ({**MON, "monitoring_quality_degradation_ratio": 0.9}, Ctx.MONITORING_QUALITY_DEGRADATION_RATIO),
        ({**MON, "monitoring_quality_degradation_ratio": "worse"}, Ctx.MONITORING_QUALITY_DEGRADATION_RATIO),
        ({**MON, "monitoring_quality_min_labels": 0}, Ctx.MONITORING_QUALITY_MIN_LABELS),
        ({**MON, "monitoring_quality_min_labels": "plenty"}, Ctx.MONITORING_QUALITY_MIN_LABELS),
        ({**BASE, "monitoring_quality_min_labels": -5}, Ctx.MONITORING_QUALITY_MIN_LABELS),  # checked with it off
        ({**MON, "model_training_metrics": "[1, 2]"}, Ctx.MODEL_TRAINING_METRICS),
        ({**MON, "model_training_metrics": '{"mae": "small"}'}, Ctx.MODEL_TRAINING_METRICS),
        ({**MON, "model_training_metrics": "{not json"}, Ctx.MODEL_TRAINING_METRICS),
        ({**BASE, "monitoring_label_task": "ranking"}, Ctx.MONITORING_LABEL_TASK),  # checked with monitoring off too
    ],
)
def test_bad_monitoring_context_names_the_key(context: dict[str, Any], key: str) -> None:
    with pytest.raises(TopologyError, match=key):
        deploy_settings(context)


# --------------------------------------------------------------------------- environment (no synth)


def test_capture_environment_parses_with_the_lambdas_own_settings() -> None:
    s = deploy_settings({**MON, "monitoring_hash_ids": "true"})
    token = "${Token[TOKEN.42]}"  # a bucket name known at deploy time
    target = CaptureTarget(token, "${Token[TOKEN.43]}")
    scorer = scorer_environment(s, model_bucket="b", output_stream="out", dlq_url="https://sqs/q", capture=target)
    api = api_environment(s, model_bucket="b", capture=target)
    for env in (scorer, api):
        assert CAPTURE_NAMES | {CaptureEnv.CAPTURE_ID_KEY_SECRET_ARN} <= set(env)
        assert env[CaptureEnv.CAPTURE_BUCKET] == token
        # What the function reads once CloudFormation has resolved the tokens: the runtime's own parser accepts it.
        resolved = {
            **env,
            CaptureEnv.CAPTURE_BUCKET: "kit-monitoring-bucket",
            CaptureEnv.CAPTURE_ID_KEY_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:capture-key",
        }
        settings = settings_from(resolved)
        assert settings.capture_bucket == "kit-monitoring-bucket"
    # Without monitoring the functions' environment is unchanged, whatever is passed.
    plain = deploy_settings(BASE)
    assert scorer_environment(
        plain, model_bucket="b", output_stream="out", dlq_url="https://sqs/q", capture=target
    ) == scorer_environment(plain, model_bucket="b", output_stream="out", dlq_url="https://sqs/q")


def test_monitor_environment_is_checked_at_synth() -> None:
    s = deploy_settings(MON)
    env = monitor_environment(s, bucket="${Token[TOKEN.7]}")
    assert set(env) - {Env.POWERTOOLS_SERVICE_NAME, Env.POWERTOOLS_METRICS_NAMESPACE, Env.LOG_LEVEL} <= set(
        vars(MonitorEnv).values()
    )
    with_version = monitor_environment(deploy_settings({**MON, "model_version": "7"}), bucket="kit-bucket")
    assert monitor_settings_from(with_version).monitor_model_version == "7"


def test_labels_environment_is_checked_at_synth() -> None:
    s = deploy_settings({**MON, "monitoring_labels": "true", "monitoring_labels_stream": "true"})
    env = labels_environment(s, bucket="${Token[TOKEN.9]}")
    assert set(env) - {Env.POWERTOOLS_SERVICE_NAME, Env.POWERTOOLS_METRICS_NAMESPACE, Env.LOG_LEVEL} == set(
        v for k, v in vars(LabelsEnv).items() if k.isupper()
    )
    assert labels_settings_from({**env, LabelsEnv.LABELS_BUCKET: "kit-bucket"}).labels_bucket == "kit-bucket"


def test_shared_names_match_the_runtime() -> None:
    """infra/topology.py repeats a few runtime names so infra need not import the image's heavy modules."""
    import lambda_fn.handler
    from lambda_fn.config import Env as RuntimeEnv
    from lambda_fn.monitoring import s3_labels, s3_store
    from lambda_fn.monitoring.drift import DEFAULT_THRESHOLDS
    from lambda_fn.variants import PRIMARY

    module, _, name = MONITOR_HANDLER.rpartition(".")
    assert module == "lambda_fn.handler" and callable(getattr(lambda_fn.handler, name))
    assert PRIMARY_VARIANT == PRIMARY
    assert DEFAULT_THRESHOLDS.psi == (PSI_WARN, PSI_ALERT)
    assert (s3_store.CAPTURE, s3_store.PROFILES, s3_store.REPORTS) == (CAPTURE_DIR, PROFILES_DIR, REPORTS_DIR)
    assert (s3_labels.LABELS, s3_store.HOURLY) == (LABELS_DIR, HOURLY_DIR)
    module, _, name = LABELS_HANDLER.rpartition(".")
    assert module == "lambda_fn.handler" and callable(getattr(lambda_fn.handler, name))
    assert CaptureEnv.MONITOR_REFERENCE_URI == MonitorEnv.MONITOR_REFERENCE_URI
    assert CaptureEnv.MONITOR_REFERENCE_SHA256 == MonitorEnv.MONITOR_REFERENCE_SHA256
    # The capture names, once the runtime has them (lambda_fn.config.Env), must be the same strings.
    for key, value in vars(CaptureEnv).items():
        if key.isupper() and hasattr(RuntimeEnv, key):
            assert getattr(RuntimeEnv, key) == value, key
    assert getattr(Metric, "CAPTURE_ERRORS", CAPTURE_ERRORS_METRIC) == CAPTURE_ERRORS_METRIC
