"""The NetworkPolicy engine's harness parts that run without a cluster: the credentials it is
handed where a pod would have them, the access it is granted, the switch that leaves it off,
and a cleanup that removes only its own rules, also on a machine without `nft`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import netpol, network


@pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")
def test_engine_reads_the_token_where_a_pod_would_and_the_host_run_is_untouched(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "serviceaccount"
    secrets.mkdir()
    (secrets / "token").write_text("a-token")

    done = subprocess.run(
        netpol.with_service_account(secrets, "cat", netpol.SERVICE_ACCOUNT_DIR / "token"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert (done.returncode, done.stdout) == (0, "a-token"), done.stderr
    assert not Path("/run/secrets/kubernetes.io").exists()


def test_engine_may_read_what_it_watches_and_nothing_else() -> None:
    account, role, binding = yaml.safe_load_all(netpol._rbac("np"))

    rules = {
        (group, resource): tuple(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("", "pods"): ("list", "watch"),
        ("", "namespaces"): ("list", "watch"),
        ("networking.k8s.io", "networkpolicies"): ("list", "watch"),
        ("", "events"): ("create", "patch", "update"),
        ("events.k8s.io", "events"): ("create", "patch", "update"),
    }
    assert (account["kind"], account["metadata"]["namespace"]) == ("ServiceAccount", "kube-system")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "np", "namespace": "kube-system"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == "np"


@pytest.mark.parametrize(("value", "off"), [(None, False), ("", False), ("0", False), ("1", True)])
def test_engine_is_off_only_when_asked(
    value: str | None, off: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(netpol.DISABLE_ENV, raising=False)
    else:
        monkeypatch.setenv(netpol.DISABLE_ENV, value)

    assert netpol.disabled() is off


def test_cleanup_touches_only_its_own_chain_and_needs_no_nft(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[list[str]] = []

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "no such chain")  # nothing left

    monkeypatch.setattr("harness.netpol.shutil.which", lambda name: None)
    monkeypatch.setattr("harness.netpol.subprocess.run", run)

    netpol.remove_engine_rules()

    assert [argv[3:] for argv in ran] == [
        [
            "-t",
            "mangle",
            "-D",
            "FORWARD",
            "-i",
            "kl-cni0",
            "-o",
            "kl-cni0",
            "-j",
            "KUBELAMBDA-NETPOL",
        ],
        ["-t", "mangle", "-F", "KUBELAMBDA-NETPOL"],
        ["-t", "mangle", "-X", "KUBELAMBDA-NETPOL"],
    ]
    assert {argv[0] for argv in ran} == {"iptables"}


def test_diversion_matches_the_cni_bridge() -> None:
    assert netpol.POD_BRIDGE == network.POD_BRIDGE
