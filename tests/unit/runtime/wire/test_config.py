"""Settings from the environment, and the environment handed to handlers."""

from __future__ import annotations

import pytest

from kubelambda_runtime.wire import config


def test_defaults_are_lambdas():
    settings = config.from_environment({"_HANDLER": "app.handler"})
    assert settings.timeout_seconds == 3
    assert settings.memory_mb == 128
    assert settings.concurrency == 1
    assert settings.task_root == "/var/task"
    assert settings.function_arn == "arn:aws:lambda:us-east-1:000000000000:function:function"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "_HANDLER"),
        ({"_HANDLER": "a.b", "AWS_LAMBDA_FUNCTION_TIMEOUT": "soon"}, "AWS_LAMBDA_FUNCTION_TIMEOUT"),
        ({"_HANDLER": "a.b", "AWS_LAMBDA_FUNCTION_TIMEOUT": "901"}, "AWS_LAMBDA_FUNCTION_TIMEOUT"),
        ({"_HANDLER": "a.b", "KUBELAMBDA_CONCURRENCY": "0"}, "KUBELAMBDA_CONCURRENCY"),
        (
            {"_HANDLER": "a.b", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"},
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        ),
        ({"_HANDLER": "a.b", "KUBELAMBDA_PORT": "70000"}, "KUBELAMBDA_PORT"),
    ],
)
def test_bad_settings_name_the_variable(env, named):
    with pytest.raises(config.ConfigError, match=named):
        config.from_environment(env)


def test_worker_environment_adds_lambdas_variables_over_the_pods():
    settings = config.from_environment(
        {"_HANDLER": "app.handler", "AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_REGION": "eu-north-1"}
    )
    env = config.worker_environment(
        settings, base={"KEEP": "me", "TZ": "Europe/Oslo"}, log_stream_name="s"
    )
    assert env["KEEP"] == "me"
    assert env["TZ"] == "Europe/Oslo"  # the function's own setting wins over Lambda's default
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn"
    assert env["AWS_DEFAULT_REGION"] == "eu-north-1"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == "s"
    assert "AWS_LAMBDA_RUNTIME_API" not in env  # would send awslambdaric looking for a server
