"""main.py: the operator's flags become its configuration; bad flags are refused by name."""

from __future__ import annotations

import pytest

from kubelambda.commands.operator_options import build_parser, config_from_args


def test_flags_become_the_configuration() -> None:
    args = build_parser().parse_args(
        [
            "--runtime-image",
            "python3.12=localhost/kubelambda-runtime:0.1.0",
            "--runtime-image",
            "python3.13=localhost/kubelambda-runtime-313:0.1.0",
            "--gateway-url",
            "http://gw.example",
            "--gateway-namespace",
            "platform",
            "--gateway-selector",
            "app=gw,tier=edge",
            "--region",
            "eu-west-1",
            "--workers",
            "4",
            "--namespace",
            "team-a",
            "--metrics-from",
            "monitoring, ops",
        ]
    )
    config = config_from_args(args)
    assert dict(config.runtime_images) == {
        "python3.12": "localhost/kubelambda-runtime:0.1.0",
        "python3.13": "localhost/kubelambda-runtime-313:0.1.0",
    }
    assert config.gateway_url == "http://gw.example"
    assert config.gateway_namespace == "platform"
    assert dict(config.gateway_pod_labels) == {"app": "gw", "tier": "edge"}
    assert config.region == "eu-west-1"
    assert config.workers == 4
    assert config.metrics_from == ("monitoring", "ops")
    assert args.namespace == ["team-a"]


def test_defaults_name_the_charts_gateway() -> None:
    config = config_from_args(build_parser().parse_args([]))
    assert config.gateway_pod_labels["app.kubernetes.io/component"] == "gateway"
    assert config.metrics_from == ("*",)
    assert config_from_args(build_parser().parse_args(["--metrics-from="])).metrics_from == ()
    assert config.function_url(namespace="ns", name="f") == (
        "http://kubelambda-gateway.kubelambda.svc/2015-03-31/functions/ns.f/invocations"
    )


def test_a_runtime_image_without_an_equals_sign_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--runtime-image", "python3.12"])
    assert "--runtime-image: expected KEY=VALUE" in capsys.readouterr().err


def test_route_urls_use_the_trigger_host() -> None:
    config = config_from_args(build_parser().parse_args(["--gateway-url", "https://gw.example/"]))
    assert config.route_url(path="/hello", host=None) == "https://gw.example/hello"
    assert config.route_url(path="/a", host="api.example.com") == "https://api.example.com/a"
