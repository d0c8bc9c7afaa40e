"""convert_template: a realistic template (templates/shop) gives the expected manifests, which
the models accept; each property and event maps as documented, and what does not map is listed
by resource and property."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent, indent
from typing import Any

import pytest
import yaml

from kubelambda.api import parse_function, parse_trigger
from kubelambda.api.sam import (
    Conversion,
    Kind,
    SamOptions,
    Stack,
    convert_file,
    convert_template,
    parse_template,
)

SHOP = Path(__file__).parent / "templates" / "shop"
INLINE = """
Runtime: python3.12
Handler: index.handler
InlineCode: "def handler(event, context): return event"
"""


def function(properties: str = "", name: str = "Fn") -> str:
    """A function resource with inline code; ``properties`` adds to (or replaces) its own."""
    own = dedent(properties).strip("\n")
    keys = {line.split(":")[0] for line in own.splitlines() if line and not line[0].isspace()}
    if keys & {"CodeUri", "PackageType"}:
        keys.add("InlineCode")
    base = [line for line in dedent(INLINE).strip().splitlines() if line.split(":")[0] not in keys]
    body = indent("\n".join([*base, own]) + "\n", "    ")
    return f"{name}:\n  Type: AWS::Serverless::Function\n  Properties:\n{body}"


def convert(resources: str, *, head: str = "", **options: Any) -> Conversion:
    text = (
        "Transform: AWS::Serverless-2016-10-31\n"
        + dedent(head)
        + "Resources:\n"
        + indent(dedent(resources), "  ")
    )
    template = parse_template(text, source="test")
    return convert_template(template, template_dir=SHOP, options=SamOptions(**options))


def listed(conversion: Conversion, kind: Kind = Kind.NOT_MAPPED) -> list[tuple[str, str]]:
    return [(f.resource, f.prop) for f in conversion.report.of_kind(kind)]


def message(conversion: Conversion, resource: str, prop: str) -> str:
    """Every finding's message at ``resource`` and ``prop``, joined."""
    found = conversion.report.findings
    return " | ".join(f.message for f in found if (f.resource, f.prop) == (resource, prop))


def spec(conversion: Conversion, name: str) -> dict[str, Any]:
    found = next(o for o in conversion.objects if o["metadata"]["name"] == name)  # type: ignore[index]
    result: dict[str, Any] = found["spec"]  # type: ignore[assignment]
    return result


def names(conversion: Conversion) -> list[str]:
    return [o["metadata"]["name"] for o in conversion.objects]  # type: ignore[index]


SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"
SHOP_OPTIONS = SamOptions(overrides={"Stage": "prod"}, stack=Stack(name="shop"))


def test_the_shop_converts_to_the_expected_manifests() -> None:
    conversion = convert_file(SHOP / "template.yaml", SHOP_OPTIONS)
    expected = list(yaml.safe_load_all((SHOP / "expected.yaml").read_text()))
    assert conversion.objects == expected


def test_the_shops_manifests_pass_the_models() -> None:
    conversion = convert_file(SHOP / "template.yaml", SHOP_OPTIONS)
    kinds = [o["kind"] for o in conversion.objects]
    assert kinds == ["Function"] * 3 + ["Trigger"] * 8
    for obj in conversion.objects:
        parsed = parse_function(obj) if obj["kind"] == "Function" else parse_trigger(obj)
        assert parsed.name == obj["metadata"]["name"]  # type: ignore[index]
    orders = parse_function(conversion.objects[0])
    assert (orders.name, orders.lambda_name) == ("order-handler", "OrderHandler")


def test_what_the_shop_does_not_map_is_listed() -> None:
    conversion = convert_file(SHOP / "template.yaml", SHOP_OPTIONS)
    assert listed(conversion) == [
        ("OrdersFunction", "Events.GetOrder.Properties.Path"),
        ("PaymentsFunction", "Layers"),
        ("OrdersTable", ""),
        ("AlertsTopic", ""),
    ]
    assert listed(conversion, Kind.IGNORED) == [
        ("Description", ""),
        ("Outputs", ""),
        ("OrdersFunction", "Policies"),
        ("ReportsFunction", "Events.Paused"),
        ("ShopApi", "StageName"),
        ("ReportsBucket", ""),
        ("PaymentsQueue", ""),
        ("PaymentsDLQ", ""),
    ]
    assert "the event has no pathParameters" in message(
        conversion, "OrdersFunction", "Events.GetOrder.Properties.Path"
    )


def test_defaults_and_pseudo_parameters() -> None:
    stack = Stack(region="eu-west-1", account_id="123456789012", name="sam-app")
    conversion = convert_file(SHOP / "template.yaml", SamOptions(stack=stack))
    env = {e["name"]: e["value"] for e in spec(conversion, "order-handler")["env"]}
    assert env == {
        "STAGE": "dev",
        "LOG_LEVEL": "DEBUG",
        "TABLE": "OrdersTable",
        "PAYMENTS_ARN": "arn:aws:lambda:eu-west-1:123456789012:function:PaymentsFunction",
        "API_URL": "https://api.eu-west-1.example.com/dev",
    }
    assert spec(conversion, "reports-function-uploaded")["bucket"]["bucket"] == (
        "sam-app-reports-123456789012"
    )
    jwt = spec(conversion, "order-handler-create-order")["http"]["auth"]["jwt"]
    assert jwt["issuer"] == "https://cognito-idp.eu-west-1.amazonaws.com/us-east-1_Shop"


def test_globals_merge_as_sam_merges_them() -> None:
    conversion = convert(
        function(
            """
            Timeout: 30
            Environment: {Variables: {OWN: "1", SHARED: local}}
            Layers: [arn:aws:lambda:us-east-1:1:layer:own:1]
            """
        ),
        head="""
        Globals:
          Function:
            Timeout: 5
            MemorySize: 1024
            Environment: {Variables: {SHARED: global, GLOBAL: "1"}}
            Layers: [arn:aws:lambda:us-east-1:1:layer:global:1]
        """,
    )
    fn = spec(conversion, "fn")
    assert (fn["timeoutSeconds"], fn["memoryMB"]) == (30, 1024)
    assert fn["env"] == [
        {"name": "SHARED", "value": "local"},
        {"name": "GLOBAL", "value": "1"},
        {"name": "OWN", "value": "1"},
    ]
    assert "Layers" in {prop for _, prop in listed(conversion)}


@pytest.mark.parametrize(
    ("properties", "function_name", "lambda_name"),
    [
        ("", "fn", "Fn"),
        ("FunctionName: OrderHandler", "order-handler", "OrderHandler"),
        ("FunctionName: orders", "orders", None),  # the same name: no annotation
        ("FunctionName: !Sub '${AWS::StackName}-Api'", "shop-api", "shop-Api"),
    ],
)
def test_the_lambda_name_is_kept_beside_the_dns_name(
    properties: str, function_name: str, lambda_name: str | None
) -> None:
    conversion = convert(function(properties), stack=Stack(name="shop"))
    [manifest] = conversion.objects
    metadata = manifest["metadata"]
    assert metadata["name"] == function_name  # type: ignore[index]
    annotations = metadata.get("annotations", {})  # type: ignore[attr-defined]
    assert annotations.get("kubelambda.dev/function-name") == lambda_name
    assert parse_function(manifest).lambda_name == lambda_name


def test_function_names_that_meet_are_made_unique() -> None:
    conversion = convert(
        function("", name="OrderHandler") + function("FunctionName: order_handler", name="Other")
    )
    assert names(conversion) == ["order-handler", "order-handler-2"]


@pytest.mark.parametrize(
    ("runtime", "converted", "listed_as"),
    [
        ("python3.12", "python3.12", None),
        ("python3.9", "python3.11", "python3.9 is not offered: converted with python3.11"),
        ("python3.14", "python3.13", "python3.14 is not offered: converted with python3.13"),
        ("nodejs20.x", None, "nodejs20.x: kubelambda runs Python"),
    ],
)
def test_runtimes(runtime: str, converted: str | None, listed_as: str | None) -> None:
    conversion = convert(function(f"Runtime: {runtime}\nEvents: {{Api: {{Type: HttpApi}}}}"))
    if converted is None:
        assert conversion.objects == []
        assert ("Fn", "Events.Api") in listed(conversion)
    else:
        assert spec(conversion, "fn")["runtime"] == converted
    if listed_as is None:
        assert ("Fn", "Runtime") not in listed(conversion)
    else:
        assert listed_as in message(conversion, "Fn", "Runtime")


@pytest.mark.parametrize(
    ("properties", "expected", "listed_as"),
    [
        ("ReservedConcurrentExecutions: 8", {"reservedConcurrency": 8}, None),
        # Lambda's "set to 0 to stop a function": every invocation throttled.
        ("ReservedConcurrentExecutions: 0", {"reservedConcurrency": 0}, None),
        (
            "ProvisionedConcurrencyConfig: {ProvisionedConcurrentExecutions: 2}",
            {"scaling": {"minReplicas": 2, "maxReplicas": 10}},
            None,
        ),
        (
            "ReservedConcurrentExecutions: 5\n"
            "ProvisionedConcurrencyConfig: {ProvisionedConcurrentExecutions: 3}",
            {"reservedConcurrency": 5, "scaling": {"minReplicas": 3, "maxReplicas": 10}},
            None,
        ),
        (
            "ReservedConcurrentExecutions: 3\n"
            "ProvisionedConcurrencyConfig: {ProvisionedConcurrentExecutions: 5}",
            {"reservedConcurrency": 3},
            "exceed ReservedConcurrentExecutions 3",
        ),
    ],
)
def test_concurrency_becomes_reserved_concurrency_and_scaling(
    properties: str, expected: dict[str, object], listed_as: str | None
) -> None:
    conversion = convert(function(properties))
    converted = spec(conversion, "fn")
    assert {k: converted[k] for k in ("reservedConcurrency", "scaling") if k in converted} == (
        expected
    )
    if listed_as:
        assert listed_as in message(conversion, "Fn", "ProvisionedConcurrencyConfig")


def test_event_invoke_config_becomes_delivery() -> None:
    conversion = convert(
        function(
            """
            EventInvokeConfig:
              MaximumRetryAttempts: 1
              MaximumEventAgeInSeconds: 120
              DestinationConfig:
                OnSuccess: {Type: Lambda, Destination: !GetAtt Audit.Arn}
                OnFailure: {Type: SNS, Destination: arn:aws:sns:us-east-1:1:alerts}
            DeadLetterQueue: {Type: SQS, TargetArn: arn:aws:sqs:us-east-1:1:dlq}
            """
        )
        + function("FunctionName: AuditTrail", name="Audit")
    )
    assert spec(conversion, "fn")["delivery"] == {
        "retries": 1,
        "maxEventAgeSeconds": 120,
        "onSuccess": {"function": "audit-trail"},
    }
    assert listed(conversion) == [
        ("Fn", "DeadLetterQueue"),
        ("Fn", "EventInvokeConfig.DestinationConfig.OnFailure"),
    ]


def test_environment_values_that_cannot_be_known_are_listed_not_guessed() -> None:
    conversion = convert(
        function(
            """
            Environment:
              Variables:
                PLAIN: 1
                FLAG: true
                SHARED: !ImportValue shared-vpc
                TOKEN: !Ref Token
                ODD: !Frob x
                _HANDLER: other.handler
            """
        ),
        head="Parameters: {Token: {Type: String}}\n",
    )
    assert spec(conversion, "fn")["env"] == [
        {"name": "PLAIN", "value": "1"},
        {"name": "FLAG", "value": "true"},
    ]
    assert listed(conversion) == [
        ("Fn", "Environment.Variables.SHARED"),
        ("Fn", "Environment.Variables.TOKEN"),
        ("Fn", "Environment.Variables.ODD"),
        ("Fn", "Environment.Variables._HANDLER"),
    ]
    assert "--parameter-overrides Token=VALUE" in message(
        conversion, "Fn", "Environment.Variables.TOKEN"
    )


@pytest.mark.parametrize(
    ("properties", "expected", "listed_as"),
    [
        ("CodeUri: orders/\nHandler: app.handler", {"inline": {"files": {"app.py": ...}}}, None),
        ("CodeUri: orders/", None, "handler index.handler needs index.py or index/__init__.py"),
        (
            "CodeUri: s3://code-bucket/app.zip",
            {"s3": {"bucket": "code-bucket", "key": "app.zip"}},
            None,
        ),
        (
            "CodeUri: {Bucket: code-bucket, Key: k.zip, Version: v2}",
            {"s3": {"bucket": "code-bucket", "key": "k.zip", "versionId": "v2"}},
            None,
        ),
        ("CodeUri: missing/", None, "is not a folder"),
        ("PackageType: Image\nImageUri: registry.example/shop/orders:1", {}, None),
        ("PackageType: Image", None, "an image function needs the image's reference"),
    ],
)
def test_code_sources(properties: str, expected: object, listed_as: str | None) -> None:
    conversion = convert(function(properties))
    if expected is None:
        assert conversion.objects == []
        prop = "ImageUri" if "Image" in properties else "" if "index" in listed_as else "CodeUri"
        assert listed_as is not None and listed_as in message(conversion, "Fn", prop)
    elif expected == {}:
        assert spec(conversion, "fn")["image"] == "registry.example/shop/orders:1"
    elif isinstance(expected, dict) and "s3" in expected:
        assert spec(conversion, "fn")["code"] == expected
        assert "spec.code.s3 is read from AWS S3" in message(conversion, "Fn", "CodeUri")
    else:
        assert list(spec(conversion, "fn")["code"]["inline"]["files"]) == ["app.py"]


def test_local_mode_names_the_code_folder() -> None:
    conversion = convert(function("CodeUri: orders/\nHandler: app.handler"), code="path")
    assert spec(conversion, "fn")["code"] == {"path": "orders"}


def test_a_handler_in_a_subfolder_is_a_dotted_module(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(e, c): return e\n")
    template = parse_template(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n"
        "  Fn: {Type: AWS::Serverless::Function, Properties: {Runtime: python3.12,"
        " Handler: src/app.handler, CodeUri: .}}\n",
        source="t",
    )
    conversion = convert_template(template, template_dir=tmp_path, options=SamOptions())
    assert spec(conversion, "fn")["handler"] == "src.app.handler"


def test_ignored_and_not_mapped_function_properties() -> None:
    conversion = convert(
        function(
            """
            Policies: [AWSLambdaBasicExecutionRole]
            Role: arn:aws:iam::1:role/x
            Tracing: Active
            Tags: {team: shop}
            VpcConfig: {SubnetIds: [a]}
            AutoPublishAlias: live
            Frobnicate: 1
            """
        )
    )
    assert listed(conversion, Kind.IGNORED) == [
        ("Fn", "Policies"),
        ("Fn", "Role"),
        ("Fn", "Tracing"),
        ("Fn", "Tags"),
    ]
    assert listed(conversion) == [
        ("Fn", "VpcConfig"),
        ("Fn", "AutoPublishAlias"),
        ("Fn", "Frobnicate"),
    ]


def test_http_api_routes() -> None:
    conversion = convert(
        function(
            """
            Events:
              Catchall: {Type: HttpApi}
              Proxy: {Type: HttpApi, Properties: {Path: "/files/{proxy+}", Method: any}}
              Read: {Type: HttpApi, Properties: {Path: /items, Method: get}}
              Write: {Type: HttpApi, Properties: {Path: "/items/{id}", Method: put}}
              Old:
                Type: HttpApi
                Properties: {Path: /v1, Method: get, PayloadFormatVersion: "1.0"}
            """
        )
    )
    routes = {
        o["metadata"]["name"]: o["spec"]["http"]  # type: ignore[index]
        for o in conversion.objects
        if o["kind"] == "Trigger"
    }
    assert routes == {
        "fn-catchall": {"path": "/", "methods": ["ANY"], "auth": {"type": "none"}},
        "fn-proxy": {"path": "/files", "methods": ["ANY"], "auth": {"type": "none"}},
        "fn-read": {"path": "/items", "methods": ["GET", "PUT"], "auth": {"type": "none"}},
        "fn-old": {"path": "/v1", "methods": ["GET"], "auth": {"type": "none"}},
    }
    assert listed(conversion) == [
        ("Fn", "Events.Proxy.Properties.Path"),
        ("Fn", "Events.Write.Properties.Path"),
        ("Fn", "Events.Old.Properties.PayloadFormatVersion"),
    ]


def test_rest_api_events_are_routed_and_their_payload_difference_listed() -> None:
    conversion = convert(
        function("Events: {Get: {Type: Api, Properties: {Path: /hello, Method: GET}}}")
    )
    assert spec(conversion, "fn-get")["http"]["path"] == "/hello"
    assert "payload 1.0" in message(conversion, "Fn", "Get")


@pytest.mark.parametrize(
    ("event", "head", "listed_as"),
    [
        (
            "{Type: Api, Properties: {Path: /a, Method: get, Auth: {ApiKeyRequired: true}}}",
            "",
            "API Gateway's API keys are not mapped",
        ),
        (
            "{Type: Api, Properties: {Path: /a, Method: get, Auth: {Authorizer: Pool}}}",
            "",
            "REST API authorizer Pool is not mapped",
        ),
        (
            "{Type: HttpApi, Properties: {Path: /a, Method: get, Auth: {Authorizer: AWS_IAM}}}",
            "",
            "IAM authorizer AWS_IAM is not mapped",
        ),
        (
            "{Type: HttpApi, Properties: {Path: /a, Method: get}}",
            "Globals: {HttpApi: {Auth: {DefaultAuthorizer: Fn, Authorizers: {Fn: "
            "{FunctionArn: arn:aws:lambda:us-east-1:1:function:auth}}}}}\n",
            "Lambda authorizer Fn is not mapped",
        ),
        (
            "{Type: HttpApi, Properties: {Path: /a, Method: get, Auth: {Authorizer: Jwt}}}",
            "Globals: {HttpApi: {Auth: {Authorizers: {Jwt: {JwtConfiguration: "
            "{issuer: !ImportValue issuer, audience: [a]}}}}}}\n",
            "cannot be resolved: Fn::ImportValue",
        ),
    ],
)
def test_routes_whose_auth_does_not_map_are_not_made_open(
    event: str, head: str, listed_as: str
) -> None:
    conversion = convert(function(f"Events: {{Route: {event}}}"), head=head)
    assert names(conversion) == ["fn"]
    assert any(listed_as in f.message for f in conversion.report.of_kind(Kind.NOT_MAPPED))


def test_a_route_two_functions_claim_goes_to_the_first() -> None:
    route = "Events: {Route: {Type: HttpApi, Properties: {Path: /a, Method: GET}}}"
    conversion = convert(function(route, name="First") + function(route, name="Second"))
    assert names(conversion) == ["first", "second", "first-route"]
    assert "already routes /a" in message(conversion, "Second", "Events.Route")


def test_bucket_schedule_and_disabled_events() -> None:
    conversion = convert(
        function(
            """
            Events:
              Upload:
                Type: S3
                Properties:
                  Bucket: !Ref Inbox
                  Events: [s3:ObjectCreated:Put, s3:ObjectRemoved:*]
                  Filter: {S3Key: {Rules: [{Name: Suffix, Value: .json}]}}
              Tick: {Type: Schedule, Properties: {Schedule: rate(5 minutes)}}
              Paused: {Type: Schedule, Properties: {Schedule: rate(1 day), State: DISABLED}}
              Later:
                Type: ScheduleV2
                Properties:
                  ScheduleExpression: cron(0 9 ? * MON-FRI *)
                  ScheduleExpressionTimezone: America/New_York
                  EndDate: "2030-01-01T00:00:00+01:00"
                  FlexibleTimeWindow: {Mode: "OFF"}
              Once: {Type: ScheduleV2, Properties: {ScheduleExpression: at(2030-01-01T00:00:00)}}
              Custom: {Type: Schedule, Properties: {Schedule: rate(1 hour), Input: '{"a": 1}'}}
            """
        )
        + "Inbox: {Type: AWS::S3::Bucket}\n"
    )
    assert spec(conversion, "fn-upload") == {
        "function": "fn",
        "bucket": {
            "bucket": "inbox",
            "events": ["s3:ObjectCreated:Put", "s3:ObjectRemoved:*"],
            "suffix": ".json",
        },
    }
    assert spec(conversion, "fn-tick") == {
        "function": "fn",
        "schedule": {"expression": "rate(5 minutes)"},
    }
    assert spec(conversion, "fn-later")["schedule"] == {
        "expression": "cron(0 9 ? * MON-FRI *)",
        "timezone": "America/New_York",
        "end": "2030-01-01T00:00:00+01:00",
    }
    assert spec(conversion, "fn-custom")["schedule"] == {"expression": "rate(1 hour)"}
    assert names(conversion) == ["fn", "fn-upload", "fn-tick", "fn-later", "fn-custom"]
    assert listed(conversion) == [
        ("Fn", "Events.Once.Properties.ScheduleExpression"),
        ("Fn", "Events.Custom.Properties.Input"),
    ]
    assert ("Fn", "Events.Paused") in listed(conversion, Kind.IGNORED)
    assert ("Fn", "Events.Later.Properties.FlexibleTimeWindow") in listed(conversion, Kind.IGNORED)


def test_queues_outside_the_template_and_without_redrive_policy() -> None:
    conversion = convert(
        function(
            """
            Events:
              Outside: {Type: SQS, Properties: {Queue: arn:aws:sqs:us-east-1:1:shared-jobs}}
              Plain: {Type: SQS, Properties: {Queue: !GetAtt Jobs.Arn}}
              Paused: {Type: SQS, Properties: {Queue: !GetAtt Jobs.Arn, Enabled: false}}
            """
        )
        + "Jobs: {Type: AWS::SQS::Queue, Properties: {QueueName: jobs.fifo, FifoQueue: true}}\n"
    )
    assert spec(conversion, "fn-outside") == {"function": "fn", "queue": {"stream": "shared-jobs"}}
    assert spec(conversion, "fn-plain") == {
        "function": "fn",
        "queue": {"stream": "jobs_fifo", "maxReceiveCount": 1000},
    }
    assert "redrive policy is unknown" in message(
        conversion, "Fn", "Events.Outside.Properties.Queue"
    )
    assert listed(conversion) == []


@pytest.mark.parametrize(
    ("properties", "expected", "listed_as"),
    [
        (
            "StartingPosition: AT_TIMESTAMP\nStartingPositionTimestamp: 1735689600",
            {
                "startingPosition": "AT_TIMESTAMP",
                "startingPositionTimestamp": "2025-01-01T00:00:00Z",
            },
            None,
        ),
        ("{}", {"startingPosition": "TRIM_HORIZON"}, "TRIM_HORIZON (the oldest record) chosen"),
        (
            "StartingPosition: LATEST\nSourceAccessConfigurations:\n"
            f"  - {{Type: CLIENT_CERTIFICATE_TLS_AUTH, URI: {SECRET}k-Ab12Cd}}\n"
            f"  - {{Type: SERVER_ROOT_CA_CERTIFICATE, URI: {SECRET}k-Ab12Cd}}\n"
            "  - {Type: VPC_SUBNET, URI: subnet:subnet-1}\n"
            "MaximumRetryAttempts: 3\n"
            "DestinationConfig: {OnFailure: {Destination: arn:aws:sqs:r:1:ledger-failures}}",
            {
                "startingPosition": "LATEST",
                "maximumRetryAttempts": 3,
                "auth": {"secretRef": {"name": "k"}, "tls": True},
            },
            None,
        ),
        (
            "StartingPosition: LATEST\nSourceAccessConfigurations:\n"
            f"  - {{Type: BASIC_AUTH, URI: {SECRET}user-Ab12Cd}}\n"
            f"  - {{Type: SERVER_ROOT_CA_CERTIFICATE, URI: {SECRET}ca-Ab12Cd}}",
            None,
            "name 2 secrets; a kafka Trigger reads one Secret with every key",
        ),
    ],
)
def test_kafka_events(
    properties: str, expected: dict[str, Any] | None, listed_as: str | None
) -> None:
    event = (
        "Type: SelfManagedKafka\nProperties:\n  KafkaBootstrapServers: [k:9092]\n  Topics: [t]\n"
    )
    body = indent(dedent(properties), "  ") if properties != "{}" else ""
    conversion = convert(function("Events:\n  Log:\n" + indent(event + body, "    ")))
    if expected is None:
        assert names(conversion) == ["fn"]
    else:
        kafka = spec(conversion, "fn-log")["kafka"]
        assert {k: kafka[k] for k in expected} == expected
    if listed_as is not None:
        assert any(listed_as in f.message for f in conversion.report.of_kind(Kind.NOT_MAPPED))


def test_kafka_failures_go_to_the_subject_named_after_the_queue() -> None:
    conversion = convert(
        function(
            """
            Events:
              Log:
                Type: SelfManagedKafka
                Properties:
                  KafkaBootstrapServers: [k:9092]
                  Topics: [t]
                  StartingPosition: LATEST
                  DestinationConfig: {OnFailure: {Destination: arn:aws:sqs:r:1:failures}}
            """
        )
    )
    assert spec(conversion, "fn-log")["delivery"] == {"onFailure": {"subject": "failures"}}


def test_other_events_and_resources() -> None:
    conversion = convert(
        function("Events: {Topic: {Type: SNS, Properties: {Topic: arn:aws:sns:r:1:t}}}")
        + "Role: {Type: AWS::IAM::Role}\n"
        + "Layer: {Type: AWS::Serverless::LayerVersion}\n"
        + "Db: {Type: AWS::DynamoDB::Table}\n"
        + "Prod: {Type: AWS::SNS::Topic, Condition: IsProd}\n"
        + "Maybe: {Type: AWS::SNS::Topic, Condition: Unknown}\n",
        head="Conditions: {IsProd: !Equals [a, b]}\n",
    )
    assert listed(conversion) == [
        ("Maybe", "Condition"),
        ("Fn", "Events.Topic"),
        ("Layer", ""),
        ("Db", ""),
        ("Maybe", ""),
    ]
    assert listed(conversion, Kind.IGNORED) == [("Prod", "Condition"), ("Role", "")]


def test_namespace_option() -> None:
    conversion = convert(
        function("Events: {Tick: {Type: Schedule, Properties: {Schedule: rate(1 hour)}}}"),
        namespace="shop",
    )
    assert {o["metadata"]["namespace"] for o in conversion.objects} == {"shop"}  # type: ignore[index]
