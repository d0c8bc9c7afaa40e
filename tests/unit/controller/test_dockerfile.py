"""operator/Dockerfile, read as text (the tests build no images): the control-plane image installs
the control-plane extra from a wheel built with the gateway compiled, from every file the build
reads; runs as the non-root user the chart expects, and starts `kubelambda`."""

from __future__ import annotations

import re
from pathlib import Path

from harness.images import BUILD_FILES

DOCKERFILE = Path(__file__).resolve().parents[3] / "operator" / "Dockerfile"
VALUES = Path(__file__).resolve().parents[3] / "charts" / "kubelambda" / "values.yaml"


def test_installs_the_control_plane_and_runs_kubelambda_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"pip install \"\$\(ls /wheels/kubelambda-\*\.whl\)\[control-plane\]\"", text)
    assert "boto3" in text  # bucket subscriptions
    user = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert user == ["10001"]
    assert 'ENTRYPOINT ["kubelambda"]' in text
    # The chart runs the pods as the same user.
    assert "runAsUser: 10001" in VALUES.read_text()


def test_the_wheel_is_built_compiled_from_every_file_the_build_reads() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^RUN KUBELAMBDA_COMPILE=1 pip wheel .* /src$", text, flags=re.M)
    copied = " ".join(re.findall(r"^COPY (?!--from)(.*)$", text, flags=re.M))
    for name in BUILD_FILES:
        assert name in copied, f"operator/Dockerfile does not copy {name}, which the build reads"
