"""commands/operator.py: the warm pool's flags become its configuration (off by default), and
flags that cannot make a pool are refused by name."""

from __future__ import annotations

import pytest

from kubelambda.commands.operator_options import build_parser, config_from_args
from kubelambda.controller.config import WarmPool

IMAGE = "--runtime-image=python3.12=localhost/kubelambda-runtime:0.1.0"


def test_no_pool_unless_asked() -> None:
    config = config_from_args(build_parser().parse_args([IMAGE]))
    assert config.warm_pool == WarmPool(size=0)
    assert not config.warm_pool.enabled


def test_the_flags_make_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBELAMBDA_POD_NAMESPACE", "platform")
    args = build_parser().parse_args(
        [
            IMAGE,
            "--runtime-image=python3.13=localhost/kubelambda-runtime-313:0.1.0",
            "--warm-pool-size=3",
            "--warm-pool-runtimes=python3.12, python3.13",
            "--warm-pool-memory=256",
            "--warm-pool-namespace=warm",
            "--warm-pool-namespace=team-b",
            "--operator-selector=app.kubernetes.io/instance=kl,app.kubernetes.io/component=operator",
        ]
    )
    config = config_from_args(args)
    assert config.warm_pool == WarmPool(
        size=3,
        runtimes=("python3.12", "python3.13"),
        memory_mb=256,
        namespaces=("warm", "team-b"),
    )
    assert config.operator_namespace == "platform"
    assert dict(config.operator_pod_labels) == {
        "app.kubernetes.io/instance": "kl",
        "app.kubernetes.io/component": "operator",
    }


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--warm-pool-size=-1"], "--warm-pool-size"),
        (["--warm-pool-size=1", "--warm-pool-memory=64"], "--warm-pool-memory"),
        (["--warm-pool-size=1", "--warm-pool-runtimes="], "--warm-pool-runtimes must name"),
        (
            ["--warm-pool-size=1", "--warm-pool-runtimes=python3.13"],
            "python3.13 need a --runtime-image",
        ),
        (
            ["--namespace=team-a", "--warm-pool-size=1", "--warm-pool-namespace=warm"],
            "warm: not a --namespace the operator serves",
        ),
    ],
)
def test_flags_that_cannot_make_a_pool_are_refused(flags: list[str], problem: str) -> None:
    with pytest.raises(SystemExit, match=problem):
        config_from_args(build_parser().parse_args([IMAGE, *flags]))
