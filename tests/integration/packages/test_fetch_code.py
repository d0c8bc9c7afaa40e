"""`python -m kubelambda.commands.fetch_code`, the function pod's init container, as a real process
against a real MinIO: it fetches the plan the controller pinned into the task root and /opt,
and a refusal ends it with exit 1 and the reason in the termination log."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

from integration.packages.conftest import CODE_BUCKET, Storage
from kubelambda.api.fetchplan import FetchPlan, PlannedZip, credential_variable
from kubelambda.api.function import S3Object
from kubelambda.commands.fetch_code import EXIT_BAD_PLAN, EXIT_REFUSED
from kubelambda.platforms.packages import S3Packages
from support.zips import entry, make_zip, module_files

APP = make_zip({"app.py": "import six\n", **module_files("six")})
LAYER = make_zip(
    [
        *module_files("idna", under="python/lib/python3.12/site-packages").items(),
        (entry("bin/layer-tool", mode=stat.S_IFREG | 0o755), "#!/bin/sh\necho from the layer\n"),
    ]
)


def plan_for(storage: Storage, *zips: tuple[str, str, bool]) -> FetchPlan:
    """A plan as the controller makes it: each (target, key, signed) resolved now."""
    store = S3Packages()
    resolved = []
    for target, key, signed in zips:
        source = S3Object(
            endpoint=storage.minio.endpoint,
            bucket=CODE_BUCKET,
            key=key,
            credentials_secret="minio" if signed else None,
        )
        what = f"{target}: s3://{CODE_BUCKET}/{key}"
        resolved.append((target, what, store.resolve(source, storage.access, what=what)))
    return FetchPlan.of(resolved)  # type: ignore[arg-type]


def fetch(
    storage: Storage, plan: str, roots: Path, *, credentials: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if credentials:
        env[credential_variable(0, "AWS_ACCESS_KEY_ID")] = storage.minio.access_key
        env[credential_variable(0, "AWS_SECRET_ACCESS_KEY")] = storage.minio.secret_key
        env[credential_variable(0, "AWS_REGION")] = storage.minio.region
    (roots / "scratch").mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kubelambda.commands.fetch_code",
            "--plan",
            plan,
            "--task-root",
            str(roots / "task"),
            "--opt-root",
            str(roots / "opt"),
            "--scratch",
            str(roots / "scratch"),
            "--termination-log",
            str(roots / "termination-log"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_and_a_layer_are_fetched_into_their_roots(
    storage: Storage, tmp_path: Path
) -> None:
    storage.put("fetch-code/app.zip", APP)
    storage.put("fetch-code/layer.zip", LAYER)
    plan = plan_for(
        storage, ("task", "fetch-code/app.zip", True), ("opt", "fetch-code/layer.zip", True)
    )
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "left-by-an-earlier-attempt.py").write_text("")

    done = fetch(storage, plan.to_json(), tmp_path)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "task" / "six.py").is_file()
    assert not (tmp_path / "task" / "left-by-an-earlier-attempt.py").exists()
    site = tmp_path / "opt" / "python" / "lib" / "python3.12" / "site-packages"
    assert (site / "idna" / "__init__.py").is_file()
    assert os.access(tmp_path / "opt" / "bin" / "layer-tool", os.X_OK)
    assert plan.zips[0].sha256 in done.stdout and plan.zips[1].sha256 in done.stdout
    assert list((tmp_path / "scratch").iterdir()) == []


def test_an_unsafe_zip_ends_the_container_with_the_reason(storage: Storage, tmp_path: Path) -> None:
    slip = make_zip({"app.py": "", "../../../outside.py": "boom"})
    storage.put("fetch-code/slip.zip", slip)
    planned = PlannedZip(
        target="task",
        what="spec.code.s3 (s3://packages/fetch-code/slip.zip)",
        endpoint=storage.minio.endpoint,
        bucket=CODE_BUCKET,
        key="fetch-code/slip.zip",
        sha256=hashlib.sha256(slip).hexdigest(),
        credentials=0,
    )

    done = fetch(storage, FetchPlan(zips=(planned,), secrets=("minio",)).to_json(), tmp_path)

    assert done.returncode == EXIT_REFUSED
    message = (tmp_path / "termination-log").read_text()
    assert message.startswith("spec.code.s3 (s3://packages/fetch-code/slip.zip): ")
    assert "zip slip refused" in message and message in done.stderr
    assert not list(tmp_path.rglob("outside.py"))


def test_an_object_replaced_since_it_was_pinned_is_refused(
    storage: Storage, tmp_path: Path
) -> None:
    storage.put("fetch-code/replaced.zip", APP)
    plan = plan_for(storage, ("task", "fetch-code/replaced.zip", True))
    storage.put("fetch-code/replaced.zip", make_zip({"app.py": "# another build\n"}))

    done = fetch(storage, plan.to_json(), tmp_path)

    assert done.returncode == EXIT_REFUSED
    assert f"not {plan.zips[0].sha256}" in (tmp_path / "termination-log").read_text()


def test_without_the_secrets_keys_the_read_is_denied(storage: Storage, tmp_path: Path) -> None:
    storage.put("fetch-code/private.zip", APP)
    plan = plan_for(storage, ("task", "fetch-code/private.zip", False))  # unsigned

    done = fetch(storage, plan.to_json(), tmp_path, credentials=False)

    assert done.returncode == EXIT_REFUSED
    assert "access denied (403" in (tmp_path / "termination-log").read_text()


def test_a_plan_that_does_not_parse_exits_2(storage: Storage, tmp_path: Path) -> None:
    done = fetch(storage, '{"zips": [{"target": "etc"}]}', tmp_path)

    assert done.returncode == EXIT_BAD_PLAN
    assert "the fetch plan is not valid" in (tmp_path / "termination-log").read_text()
