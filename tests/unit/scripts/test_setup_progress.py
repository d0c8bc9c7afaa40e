"""scripts/setup's progress lines, from a run with stand-ins for apt-get, id and python3 on a PATH
of their own (nothing is installed): start, progress and done lines on stderr, a cached line on
the second run, and only the venv's bin folder on stdout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[3] / "scripts" / "setup"

# What the script itself runs; everything else it asks for is missing from the PATH.
REAL_TOOLS = ("bash", "env", "dirname", "mkdir", "cat", "awk")

APT_GET = """#!/bin/bash
# A stand-in: apt-get's machine-readable status on fd 3 when asked for it (APT::Status-Fd=3).
echo "apt-get $*" >> "$APT_LOG"
case "$*" in *Status-Fd=3*)
  for p in 5 12.5 31 77.7 100; do echo "dlstatus:1:$p:Retrieving file" >&3; done
  for p in 0 9 10 55.5 99; do echo "pmstatus:wrk:$p:Installing wrk" >&3; done
  echo "apt's own output"
esac
"""

PYTHON3 = """#!/bin/bash
# A stand-in for `python3 -m venv DIR`: a venv whose pip prints what pip prints and notes the
# checkout an editable install (-e DIR[dev]) would import from; its python, asked (-c) where
# kubelambda comes from, says that checkout (nothing if none was installed).
PATH=/usr/bin:/bin  # its own tools, not those of the PATH under test
[ "$1 $2" = "-m venv" ] || exit 2
mkdir -p "$3/bin"
cat > "$3/bin/python" <<'PYTHON'
#!/bin/bash
cat "$(dirname "$0")/../installed-from" 2>/dev/null
PYTHON
cat > "$3/bin/pip" <<'PIP'
#!/bin/bash
for ((i = 1; i <= 60; i++)); do
  echo "Collecting package$i"; echo "  Using cached package$i.whl"
done
echo "Installing collected packages: package1, package2"
echo "Successfully installed package1 package2"
for arg in "$@"; do
  case "$arg" in *"[dev]") echo "${arg%\\[dev\\]}" > "$(dirname "$0")/../installed-from" ;; esac
done
PIP
chmod +x "$3/bin/python" "$3/bin/pip"
"""


# Every command setup checks for.
EVERY_TOOL = ["wrk", "hyperfine", "nginx", "prometheus", "containerd", "runc", "buildah"]
EVERY_TOOL += ["debootstrap", "iptables", "ip", "conntrack", "gcc", "java", "mvn", "chromium"]
EVERY_TOOL += ["node", "npm", "cmake", "make", "g++"]


def fake_path(tmp_path: Path, *, present: list[str]) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in REAL_TOOLS:
        real = shutil.which(tool)
        assert real is not None, f"the test needs {tool} on this machine"
        (bin_dir / tool).symlink_to(real)
    stand_ins = {"apt-get": APT_GET, "python3": PYTHON3, "id": "#!/bin/bash\necho 0\n"}
    stand_ins.update({name: "#!/bin/bash\n" for name in present})
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_setup(tmp_path: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "KUBELAMBDA_CACHE": str(tmp_path / "cache"),
        "APT_LOG": str(tmp_path / "apt.log"),
    }
    return subprocess.run(
        [str(SETUP)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    """Every command setup checks for is there except wrk; /usr/lib/cni and libc6-dev are as
    on this machine (setup checks files there, which a test cannot hide)."""
    present = ["hyperfine", "nginx", "prometheus", "containerd", "runc", "buildah"]
    present += ["debootstrap", "iptables", "ip", "conntrack", "gcc", "java", "mvn", "chromium"]
    present += ["node", "npm", "cmake", "make", "g++"]
    return fake_path(tmp_path, present=present)


def test_a_first_run_says_what_it_does_how_far_it_is_and_how_long_it_took(
    tmp_path: Path, machine: Path
) -> None:
    done = run_setup(tmp_path, machine)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tmp_path / 'cache' / 'venv' / 'bin'}\n"
    # apt's own output reaches stderr beside the status pipe, so in no fixed order.
    lines = [line for line in done.stderr.splitlines() if line != "apt's own output"]
    assert "apt's own output" in done.stderr
    assert lines[0].startswith("setup: Debian packages wrk")
    assert "installing with apt-get (first run only;" in lines[0]
    assert lines[1] == "setup: Debian packages: [1/2] apt-get update"
    # The count depends on whether this machine has /usr/lib/cni and libc6-dev's files.
    assert lines[2].startswith("setup: Debian packages: [2/2] apt-get install (")
    assert lines[3:12] == [
        "setup: Debian packages: 0% downloaded",
        "setup: Debian packages: 10% downloaded",
        "setup: Debian packages: 30% downloaded",
        "setup: Debian packages: 70% downloaded",
        "setup: Debian packages: 100% downloaded",
        "setup: Debian packages: 0% installed",
        "setup: Debian packages: 10% installed",
        "setup: Debian packages: 50% installed",
        "setup: Debian packages: 90% installed",
    ]
    assert re.fullmatch(r"setup: Debian packages: done in \d+ s", lines[12])
    assert lines[13] == f"setup: virtualenv {tmp_path}/cache/venv: creating (first run only)"
    assert lines[14].startswith("setup: kubelambda[dev]: installing into ")
    assert lines[15:18] == [
        "setup: kubelambda[dev]: 25 packages collected",
        "setup: kubelambda[dev]: 50 packages collected",
        "setup: kubelambda[dev]: installing what was collected (60)",
    ]
    assert re.fullmatch(r"setup: kubelambda\[dev\]: done in \d+ s", lines[18])
    assert len(lines) == 19
    assert "\x1b" not in done.stderr
    assert "\r" not in done.stderr
    assert "-o APT::Status-Fd=3" in (tmp_path / "apt.log").read_text()


def test_a_second_run_says_cached_in_one_line_per_step(tmp_path: Path) -> None:
    bin_dir = fake_path(tmp_path, present=EVERY_TOOL)
    if not (Path("/usr/lib/cni/bridge").exists() and Path("/usr/include/stdio.h").exists()):
        pytest.fail("this machine lacks the CNI plugins or libc6-dev, which scripts/setup installs")
    first = run_setup(tmp_path, bin_dir)
    assert first.returncode == 0, first.stderr
    again = run_setup(tmp_path, bin_dir)
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines() == [
        "setup: Debian packages: cached (all installed)",
        f"setup: kubelambda[dev] in {tmp_path}/cache/venv: cached (up to date with pyproject.toml)",
    ]
    assert not (tmp_path / "apt.log").exists()
    assert os.listdir(tmp_path / "cache") == ["venv"]


def test_a_venv_that_imports_kubelambda_from_another_checkout_is_installed_again(
    tmp_path: Path,
) -> None:
    bin_dir = fake_path(tmp_path, present=EVERY_TOOL)
    assert run_setup(tmp_path, bin_dir).returncode == 0
    # Another clone's setup (or a hand) pointed the shared venv's install elsewhere; the stamp
    # still says this checkout's pyproject.toml is installed.
    (tmp_path / "cache" / "venv" / "installed-from").write_text("/elsewhere/checkout\n")
    again = run_setup(tmp_path, bin_dir)
    assert again.returncode == 0, again.stderr
    assert any(
        line.startswith("setup: kubelambda[dev]: installing into ")
        for line in again.stderr.splitlines()
    ), again.stderr
    installed = (tmp_path / "cache" / "venv" / "installed-from").read_text().strip()
    assert installed == str(SETUP.parents[1])
