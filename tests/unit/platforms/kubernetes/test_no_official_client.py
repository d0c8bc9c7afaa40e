"""The control plane's processes never import the official client's models (43 MiB of RSS):
a fresh interpreter imports the client, the kopf watches and the commands, then looks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes."))
thirdparty = sys.modules.get("kopf._cogs.helpers.thirdparty")
dummies = thirdparty is not None and thirdparty.V1ObjectMetaSync is None
import kubernetes.client  # the fallback loader can still import it afterwards
print(json.dumps({"loaded": loaded, "kopf_dummies": dummies}))
"""


@pytest.mark.parametrize(
    "modules",
    [
        (
            "kubelambda.platforms.kubernetes.client",
            "kubelambda.platforms.kubernetes.watches",
            "kubelambda.commands.operator",
        ),
        ("kubelambda.commands.gateway",),
    ],
    ids=["operator", "gateway"],
)
def test_a_fresh_process_has_no_kubernetes_client(modules: tuple[str, ...]) -> None:
    path = os.pathsep.join(str(ROOT / part) for part in ("operator", "runtime", "tests"))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["loaded"] == []
    if "kubelambda.platforms.kubernetes.watches" in modules:
        assert found["kopf_dummies"], "kopf recognises the official models: it imported them"
