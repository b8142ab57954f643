"""Sync API: an API Gateway REST API in front of the API function's `live` alias.

Routes come from `lambda_fn.api.ROUTES` (one source of truth): API Gateway answers unknown paths
itself, and every declared method requires the chosen auth (API key + usage plan, or IAM SigV4).
"""

from __future__ import annotations

import re

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.functions import RETENTION
from infra.nag import acknowledge, acknowledge_resource
from infra.settings import ApiAuth

_PARAM = re.compile(r"{\w+}")


def api_routes() -> list[tuple[str, str]]:
    """(method, API Gateway path) for each route the API function serves."""
    from lambda_fn.api import ROUTES

    return sorted({(method, re.sub(r"<(\w+)>", r"{\1}", rule)) for method, rule, _ in ROUTES})


class SyncApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        target: lambda_.Alias,
        api_name: str,
        stage_name: str,
        auth: ApiAuth,
        rate_limit: int,
        burst_limit: int,
        quota_per_day: int,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=RETENTION[log_retention_days],
            removal_policy=RemovalPolicy.DESTROY,
        )
        iam_auth = auth == "iam"
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=api_name,
            description="Synchronous predictions: /predict, MLflow /invocations, Open Inference Protocol /v2",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Execution logs need the account-level CloudWatch role; access logs are per stage.
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies (features) stay out of the logs
                metrics_enabled=True,
                tracing_enabled=True,
            ),
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM if iam_auth else apigw.AuthorizationType.NONE,
                api_key_required=not iam_auth,
            ),
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
        )
        json_object = self.api.add_model(
            "JsonObject",
            content_type="application/json",
            schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4, type=apigw.JsonSchemaType.OBJECT),
            description="Every JSON body the API accepts is an object; the function validates the rest",
        )
        validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        integration = apigw.LambdaIntegration(target, allow_test_invoke=False)
        self.routes = api_routes()
        self.methods: list[apigw.Method] = []
        for method, path in self.routes:
            resource = self.api.root.resource_for_path(path)
            params = {f"method.request.path.{p}": True for p in re.findall(r"{(\w+)}", path)}
            self.methods.append(
                resource.add_method(
                    method,
                    integration,
                    request_validator=validator,
                    request_parameters=params or None,
                    request_models={"application/json": json_object} if method == "POST" else None,
                )
            )
        self._gateway_responses(iam_auth)
        stage = self.api.deployment_stage
        self.api_key: apigw.IApiKey | None = None
        self.invoke_policy: iam.ManagedPolicy | None = None
        if iam_auth:
            # Callers attach this policy: invoke exactly the declared routes of this stage.
            route_arns = {
                (verb, path): self.api.arn_for_execute_api(verb, _PARAM.sub("*", path), stage.stage_name)
                for verb, path in self.routes
            }
            self.invoke_policy = iam.ManagedPolicy(
                self,
                "InvokePolicy",
                description=f"Invoke the {api_name} API ({stage_name})",
                statements=[
                    iam.PolicyStatement(
                        actions=["execute-api:Invoke"],
                        resources=list(route_arns.values()),
                    )
                ],
            )
            for (_, path), route_arn in route_arns.items():
                if "{" in path:
                    acknowledge_resource(
                        self.invoke_policy,
                        route_arn,
                        "The wildcard is a path parameter of a declared route: the model name or version.",
                    )
            for api_method in self.methods:
                acknowledge(
                    api_method,
                    "AwsSolutions-COG4",
                    "api_auth=iam: the method requires SigV4-signed IAM callers (execute-api:Invoke); no user pool.",
                )
        else:
            plan = self.api.add_usage_plan(
                "UsagePlan",
                name=f"{api_name}-default",
                throttle=apigw.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
                quota=apigw.QuotaSettings(limit=quota_per_day, period=apigw.Period.DAY),
                api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=stage)],
            )
            self.api_key = self.api.add_api_key("Key", api_key_name=f"{api_name}-default")
            plan.add_api_key(self.api_key)
            for api_method, rule in ((x, r) for x in self.methods for r in ("AwsSolutions-APIG4", "AwsSolutions-COG4")):
                acknowledge(
                    api_method,
                    rule,
                    "api_auth=api-key: every method requires an API key bound to a throttled, quota-limited"
                    " usage plan; deploy with -c api_auth=iam for SigV4-signed callers.",
                )
        acknowledge(
            stage,
            "AwsSolutions-APIG3",
            "A WAF web ACL is account policy (rules, cost); stage throttling and the usage plan bound abuse."
            " Associate an existing ACL with the stage ARN if the account has one.",
        )
        acknowledge(
            self.api.node.find_child("CloudWatchRole"),
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level logging role: AWS's documented policy for it, scoped to logs actions.",
        )

    def _gateway_responses(self, iam_auth: bool) -> None:
        """Answers API Gateway gives itself (auth, throttling, validation) in the function's error shape."""

        def body(code: str) -> dict[str, str]:
            return {
                "application/json": '{"error": {"code": "' + code + '", "message": $context.error.messageString}, '
                '"request_id": "$context.requestId"}'
            }

        self.api.add_gateway_response("Default4xx", type=apigw.ResponseType.DEFAULT_4_XX, templates=body("bad_request"))
        self.api.add_gateway_response("Default5xx", type=apigw.ResponseType.DEFAULT_5_XX, templates=body("unavailable"))
        self.api.add_gateway_response(
            "BadBody", type=apigw.ResponseType.BAD_REQUEST_BODY, templates=body("invalid_request")
        )
        self.api.add_gateway_response("Throttled", type=apigw.ResponseType.THROTTLED, templates=body("throttled"))
        if not iam_auth:
            # A REST API answers an undeclared path with 403 "Missing Authentication Token"; with API keys
            # (no SigV4 to be missing) that can only mean an unknown route: say 404, as the function does.
            self.api.add_gateway_response(
                "UnknownRoute",
                type=apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
                status_code="404",
                templates=body("not_found"),
            )
