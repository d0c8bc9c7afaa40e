"""What the zygote (kubelambda_runtime/zygote.py) will not fork: a runtime whose environment
changes a variable only a new process reads."""

from __future__ import annotations

import pytest

from kubelambda_runtime.zygote import startup_differences

OWN = {"PATH": "/bin", "LANG": "C.UTF-8", "LD_LIBRARY_PATH": "/opt/lib", "HOME": "/root"}


@pytest.mark.parametrize(
    ("wanted", "differing"),
    [
        (OWN, []),
        ({**OWN, "AWS_REGION": "eu-west-1", "PATH": "/usr/bin", "TZ": "UTC"}, []),
        ({**OWN, "PYTHONPATH": "/opt/python", "TMPDIR": "/tmp/x"}, []),  # read when used
        ({k: v for k, v in OWN.items() if k != "HOME"}, []),
        ({**OWN, "LD_LIBRARY_PATH": "/opt/other"}, ["LD_LIBRARY_PATH"]),
        ({k: v for k, v in OWN.items() if k != "LD_LIBRARY_PATH"}, ["LD_LIBRARY_PATH"]),
        ({**OWN, "LD_PRELOAD": "/opt/lib/x.so", "LC_ALL": "de_DE.UTF-8"}, ["LC_ALL", "LD_PRELOAD"]),
        ({**OWN, "LANG": "fr_FR.UTF-8", "MALLOC_ARENA_MAX": "2"}, ["LANG", "MALLOC_ARENA_MAX"]),
        ({**OWN, "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, ["GLIBC_TUNABLES"]),
    ],
)
def test_only_variables_read_at_start_keep_a_runtime_from_being_forked(wanted, differing):
    assert startup_differences(OWN, wanted) == differing
