"""The project with its gateway compiled as the control-plane image carries it (mypyc, setup.py),
for benchmarks that run the gateway as a process on the host: installed without dependencies
(the venv has them) under the cache's compiled/<source tag>, once per version of the sources.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from harness.builds import Measure
from harness.cache import exclusive, subdir
from harness.images import install_project, require_compiled, source_tag


def compiled_site() -> Path:
    """A folder to put first on PYTHONPATH: there `kubelambda` is the compiled build of these
    sources (built on first use, a minute or two; earlier sources' builds are removed)."""
    root = subdir("compiled")
    site = root / source_tag()
    log = subdir("logs") / "compiled.log"
    with exclusive("compiled"):
        if not (site / "kubelambda").is_dir():
            with tempfile.TemporaryDirectory(dir=root) as scratch:
                staging = Path(scratch) / "site-packages"
                install_project(
                    staging,
                    extra="",
                    compiled=True,
                    measure=Measure(),
                    log=log,
                    dependencies=False,
                )
                require_compiled(staging, log=log)
                shutil.rmtree(staging / "bin", ignore_errors=True)
                for old in root.iterdir():
                    if old.name != Path(scratch).name:
                        shutil.rmtree(old, ignore_errors=True)
                staging.rename(site)
    return site
