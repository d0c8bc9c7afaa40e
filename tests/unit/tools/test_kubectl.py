"""`kubelambda logs --cluster`'s kubectl command, built as data."""

from __future__ import annotations

import pytest

from kubelambda.api.labels import FUNCTION_LABEL, pod_selector
from kubelambda.tools import kubectl
from kubelambda.tools.kubectl import KubectlMissing, find_kubectl, logs_command


def test_the_label_is_the_one_the_operator_selects_pods_by() -> None:
    assert kubectl.FUNCTION_LABEL == FUNCTION_LABEL
    assert pod_selector("hello") == {kubectl.FUNCTION_LABEL: "hello"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"namespace": None, "context": None, "follow": False, "tail": None},
            "kubectl logs --selector kubelambda.dev/function=hello --prefix --tail=-1"
            " --max-log-requests=20",
        ),
        (
            {"namespace": "shop", "context": "prod", "follow": True, "tail": 50},
            "kubectl --context prod --namespace shop logs --selector"
            " kubelambda.dev/function=hello --prefix --tail=50 --max-log-requests=20 --follow",
        ),
        (
            {"namespace": None, "context": None, "follow": True, "tail": 0, "max_log_requests": 3},
            "kubectl logs --selector kubelambda.dev/function=hello --prefix --tail=0"
            " --max-log-requests=3 --follow",
        ),
    ],
)
def test_the_command(options: dict[str, object], expected: str) -> None:
    command = logs_command(kubectl="kubectl", function="hello", **options)  # type: ignore[arg-type]
    assert " ".join(command) == expected


def test_kubectl_is_found_on_path_or_its_absence_is_said() -> None:
    assert find_kubectl(lambda name: f"/opt/bin/{name}") == "/opt/bin/kubectl"
    with pytest.raises(KubectlMissing, match="kubectl is not on PATH: install it"):
        find_kubectl(lambda name: None)
