"""worker/marshal.py finds Decimal through sys.modules: a worker whose handler never imports
decimal does not load it, and one that does gets its Decimals written as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNTIME_ROOT = Path(__file__).resolve().parents[4] / "runtime"

CODE = """
import sys
sys.path.insert(0, {root!r})
from kubelambda_runtime.worker.marshal import marshal
assert "decimal" not in sys.modules
try:
    marshal({{"x": object()}})
except TypeError as exc:
    print(exc)
import decimal
print(marshal({{"a": decimal.Decimal("1.50"), "b": [decimal.Decimal("NaN")]}}).decode())
"""


def test_decimals_are_written_once_decimal_is_imported_and_not_loaded_before() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-c", CODE.format(root=str(RUNTIME_ROOT))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Object of type object is not JSON serializable",
        '{"a": 1.50, "b": [NaN]}',
    ]
