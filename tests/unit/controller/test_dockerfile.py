"""operator/Dockerfile, read as text (the tests build no images): the control-plane image installs
the control-plane extra, runs as the non-root user the chart expects, and starts `kubelambda`."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[3] / "operator" / "Dockerfile"
VALUES = Path(__file__).resolve().parents[3] / "charts" / "kubelambda" / "values.yaml"


def test_installs_the_control_plane_and_runs_kubelambda_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"pip install \"/src\[control-plane\]\"", text)
    assert "boto3" in text  # bucket subscriptions
    user = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert user == ["10001"]
    assert 'ENTRYPOINT ["kubelambda"]' in text
    # The chart runs the pods as the same user.
    assert "runAsUser: 10001" in VALUES.read_text()
