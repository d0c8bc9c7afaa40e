"""The Function spec model and its code sources: ``parse_function`` turns a manifest or a kopf
body into a Function.

The controller, the gateway, the autoscaler and local mode all read Functions through it;
it applies the CRD's defaults, bounds and CEL rules (crds/functions.kubelambda.dev.yaml).
Scaling and throttling are read by limits.py.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeAlias

from kubelambda.api.delivery import Delivery, read_delivery
from kubelambda.api.env import EnvVar, read_env
from kubelambda.api.errors import SpecError
from kubelambda.api.limits import Scaling, Throttling, read_scaling, read_throttling
from kubelambda.api.meta import read_meta
from kubelambda.api.network import EgressRule, read_egress
from kubelambda.api.patterns import (
    CUSTOM_RUNTIME_PREFIX,
    DNS_LABEL,
    FILE_NAME,
    FILE_NAME_MAX_LENGTH,
    HANDLER,
)
from kubelambda.api.reader import Node, Reader, matches
from kubelambda.api.schema import FUNCTION_FIELDS

KIND: Final = "Function"
# The AWS Lambda function name a Function also answers to on the Invoke API: Lambda names may
# hold capitals and '_' (OrderHandler), a Function's own name is a DNS label (order-handler).
LAMBDA_NAME_ANNOTATION: Final = "kubelambda.dev/function-name"
# Lambda's FunctionName without an ARN: 1-64 letters, digits, '-' and '_'.
LAMBDA_NAME: Final = r"^[A-Za-z0-9_-]{1,64}$"


@dataclass(frozen=True)
class InlineCode:
    """The files themselves (relative path → source); the controller stores them in a ConfigMap."""

    files: Mapping[str, str]


@dataclass(frozen=True)
class ConfigMapCode:
    """An existing ConfigMap in the Function's namespace whose keys are file names."""

    name: str


@dataclass(frozen=True)
class FolderCode:
    """Local mode only: a folder on this machine, resolved against the manifest's folder."""

    path: Path


@dataclass(frozen=True, kw_only=True)
class S3Object:
    """A zip on an S3 server: a deployment package (``spec.code.s3``) or a layer
    (``spec.layers[].s3``). ``sha256`` is lowercase hex, whichever form the spec gave; no
    ``endpoint`` means AWS S3, no ``credentials_secret`` unsigned requests (on a cluster)."""

    bucket: str
    key: str
    endpoint: str | None = None
    region: str | None = None
    version_id: str | None = None
    sha256: str | None = None
    credentials_secret: str | None = None

    @property
    def uri(self) -> str:
        """s3://bucket/key, with ?versionId= when one is pinned: for messages."""
        version = f"?versionId={self.version_id}" if self.version_id else ""
        return f"s3://{self.bucket}/{self.key}{version}"


Code: TypeAlias = InlineCode | ConfigMapCode | FolderCode | S3Object


@dataclass(frozen=True, kw_only=True)
class Function:
    """A valid, fully defaulted Function. Exactly one of ``runtime`` and ``image`` is set;
    ``code`` is None only with an image, and ``handler`` may be None only with an image or a
    custom runtime."""

    name: str
    namespace: str
    runtime: str | None
    image: str | None
    handler: str | None
    code: Code | None
    env: tuple[EnvVar, ...]
    memory_mb: int
    timeout_seconds: int
    concurrency: int
    scaling: Scaling
    delivery: Delivery
    # The Invoke API takes callers without a signature (spec.invoke.anonymous).
    anonymous_invoke: bool = False
    # Destinations beyond DNS and the gateway (spec.network.egress).
    egress: tuple[EgressRule, ...] = ()
    # The Lambda name the Invoke API also resolves to this Function (LAMBDA_NAME_ANNOTATION).
    lambda_name: str | None = None
    # Lambda layers, unpacked under /opt in this order (spec.layers).
    layers: tuple[S3Object, ...] = ()
    # Invocations in flight at once, over all pods (spec.reservedConcurrency); None: no cap
    # but the pods'. 0 throttles every invocation, as Lambda's "set to 0 to stop a function".
    reserved_concurrency: int | None = None
    # Invocations started per second (spec.throttling); None: no rate limit.
    throttling: Throttling | None = None

    @property
    def custom_runtime(self) -> bool:
        """An OS-only runtime (provided.al2023, provided.al2): the code's bootstrap runs it."""
        return is_custom_runtime(self.runtime)


def is_custom_runtime(runtime: str | None) -> bool:
    return runtime is not None and runtime.startswith(CUSTOM_RUNTIME_PREFIX)


def parse_function(obj: object, *, manifest_dir: Path | None = None) -> Function:
    """Parse and validate a Function object, raising SpecError with every problem found.

    ``manifest_dir`` is the folder of the manifest file, given by local mode only: it allows
    ``spec.code.path`` (a code folder relative to it), which a cluster refuses.
    """
    reader = Reader(FUNCTION_FIELDS)
    function = _read_function(reader, obj, manifest_dir)
    if reader.problems or function is None:
        raise SpecError(reader.problems)
    return function


def _read_function(reader: Reader, obj: object, manifest_dir: Path | None) -> Function | None:
    root = reader.root(obj)
    if root is None:
        return None
    name, namespace = read_meta(reader, root, kind=KIND)
    if name and not (len(name) <= 63 and matches(DNS_LABEL, name)):
        reader.report(
            "metadata.name",
            "must be a DNS-1035 label of at most 63 characters (lowercase letters, digits and '-',"
            f" starting with a letter): it names the function's Service; not {name!r}",
        )
    spec = reader.obj(root.child("spec"))
    if spec is None:
        return None
    runtime = reader.optional_text(spec.child("runtime"))
    image = reader.optional_text(spec.child("image"))
    handler = reader.optional_text(spec.child("handler"))
    has_image = spec.child("image").present
    if spec.child("runtime").present == has_image:
        reader.report("spec", "must set exactly one of runtime, image")
    if not has_image and not spec.child("code").present:
        reader.report(
            "spec.code", "is required with spec.runtime (only an image can carry its own code)"
        )
    custom = is_custom_runtime(runtime)
    if not has_image and not custom and not spec.child("handler").present:
        reader.report(
            "spec.handler",
            "is required with spec.runtime, unless it is provided.al2023 or provided.al2",
        )
    if handler is not None and not custom and not matches(HANDLER, handler):
        reader.report(
            "spec.handler",
            "must be module.function, a Python module path and a function name (app.handler),"
            f" not {handler!r}",
        )
        handler = None
    code = _read_code(reader, spec, manifest_dir)
    if custom and code is not None and isinstance(code, InlineCode | ConfigMapCode):
        reader.report(
            "spec.code",
            f"must be a package for spec.runtime {runtime} (s3, or path with kubelambda local):"
            " inline files and ConfigMaps cannot hold the executable bootstrap it runs",
        )
    if handler is not None and code is not None and not custom:
        _check_handler_module(reader, handler, code)
    concurrency = reader.integer(spec.child("concurrency"))
    reserved = reader.optional_integer(spec.child("reservedConcurrency"))
    delivery = read_delivery(reader, spec) or Delivery()
    letter = delivery.dead_letter
    if letter is not None and letter.function is not None and letter.function == name:
        reader.report(
            "spec.delivery.deadLetter.function", "must name another Function, not this one"
        )
    return Function(
        name=name,
        namespace=namespace,
        runtime=runtime,
        image=image,
        handler=handler,
        code=code,
        env=read_env(reader, spec),
        memory_mb=reader.integer(spec.child("memoryMB")),
        timeout_seconds=reader.integer(spec.child("timeoutSeconds")),
        concurrency=concurrency,
        scaling=read_scaling(reader, spec, concurrency, reserved),
        delivery=delivery,
        anonymous_invoke=_read_anonymous(reader, spec),
        egress=read_egress(reader, spec),
        lambda_name=_read_lambda_name(reader, root),
        layers=_read_layers(reader, spec, has_runtime=spec.child("runtime").present),
        reserved_concurrency=reserved,
        throttling=read_throttling(reader, spec),
    )


def _read_lambda_name(reader: Reader, root: Node) -> str | None:
    annotations = root.child("metadata").child("annotations").value
    value = annotations.get(LAMBDA_NAME_ANNOTATION) if isinstance(annotations, Mapping) else None
    if value is None:
        return None
    if not (isinstance(value, str) and matches(LAMBDA_NAME, value)):
        # The API server cannot check an annotation's value; the controller reports it instead.
        reader.report(
            f"metadata.annotations[{LAMBDA_NAME_ANNOTATION}]",
            f"must be a Lambda function name (1 to 64 letters, digits, '-' and '_'), not {value!r}",
        )
        return None
    return value


def _read_anonymous(reader: Reader, spec: Node) -> bool:
    node = reader.obj(spec.child("invoke"))
    if node is None:
        return False
    return bool(reader.optional_boolean(node.child("anonymous")))


def _read_code(reader: Reader, spec: Node, manifest_dir: Path | None) -> Code | None:
    node = reader.obj(spec.child("code"))
    if node is None:
        return None
    sources = [key for key in ("inline", "configMapRef", "s3", "path") if node.child(key).present]
    if len(sources) != 1:
        reader.report(
            node.path,
            "must set exactly one of inline, configMapRef, s3 (or path, with kubelambda local)",
        )
    code: Code | None = None
    if (inline := reader.obj(node.child("inline"))) is not None:
        files = reader.obj(inline.child("files"))
        sources_by_name = {}
        for file_name, source in reader.entries(files):
            if len(file_name) > FILE_NAME_MAX_LENGTH or not matches(FILE_NAME, file_name):
                reader.report(
                    f"{inline.path}.files",
                    f"names must be relative paths of at most {FILE_NAME_MAX_LENGTH} characters,"
                    " made of letters, digits, '_', '-' and '.', with no segment starting with"
                    f" '.' (so no '..' and no absolute paths); not {file_name!r}",
                )
            sources_by_name[file_name] = reader.text(source)
        code = InlineCode(files=MappingProxyType(sources_by_name))
    if (ref := reader.obj(node.child("configMapRef"))) is not None:
        code = ConfigMapCode(name=reader.text(ref.child("name")))
    if (s3 := reader.obj(node.child("s3"))) is not None:
        code = _read_s3(reader, s3)
    if (folder := reader.optional_text(node.child("path"))) is not None:
        code = _read_folder(reader, f"{node.path}.path", folder, manifest_dir)
    return code if len(sources) == 1 else None


def _read_s3(reader: Reader, node: Node) -> S3Object:
    secret = reader.obj(node.child("credentialsSecret"))
    digest = reader.optional_text(node.child("sha256"))
    return S3Object(
        bucket=reader.text(node.child("bucket")),
        key=reader.text(node.child("key")),
        endpoint=reader.optional_text(node.child("endpoint")),
        region=reader.optional_text(node.child("region")),
        version_id=reader.optional_text(node.child("versionId")),
        sha256=_hex_sha256(digest) if digest is not None else None,
        credentials_secret=reader.text(secret.child("name")) if secret is not None else None,
    )


def _hex_sha256(text: str) -> str | None:
    """Lowercase hex of a SHA-256 given in hex or base64 (the pattern told them apart)."""
    if len(text) == 64:
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None  # the pattern's problem is already reported
    return raw.hex() if len(raw) == 32 else None


def _read_layers(reader: Reader, spec: Node, *, has_runtime: bool) -> tuple[S3Object, ...]:
    items = reader.items(spec.child("layers"))
    if items and not has_runtime:
        reader.report(
            "spec.layers",
            "needs spec.runtime (as on Lambda, an image carries its own dependencies)",
        )
    layers = []
    for item in items:
        node = reader.obj(item)
        s3 = reader.obj(node.child("s3")) if node is not None else None
        if s3 is not None:
            layers.append(_read_s3(reader, s3))
    return tuple(layers)


def _read_folder(reader: Reader, at: str, folder: str, manifest_dir: Path | None) -> Code | None:
    if manifest_dir is None:
        reader.report(
            at,
            "names a folder on your machine and works only with `kubelambda local`;"
            " on a cluster use spec.code.inline, spec.code.configMapRef or spec.code.s3",
        )
        return None
    if Path(folder).is_absolute():
        # A manifest is shared (a repository, GitOps): a path on one machine means nothing
        # on the next. Relative paths may leave the folder (deploy/ next to src/, as SAM's
        # CodeUri does).
        reader.report(at, f"must be relative to the manifest's folder, not {folder!r}")
        return None
    path = (manifest_dir / folder).resolve()
    if not path.is_dir():
        reader.report(
            at, f"must name a folder, relative to the manifest's folder; {path} is not one"
        )
        return None
    return FolderCode(path=path)


def _check_handler_module(reader: Reader, handler: str, code: Code) -> None:
    """Catch a handler that names a missing module now, not at the first invocation."""
    module = handler[: handler.rfind(".")].replace(".", "/")
    candidates = (f"{module}.py", f"{module}/__init__.py")
    if isinstance(code, InlineCode):
        found = any(name in code.files for name in candidates)
        where = "spec.code.inline.files"
    elif isinstance(code, FolderCode):
        found = any((code.path / name).is_file() for name in candidates)
        where = "spec.code.path"
    else:
        return  # a ConfigMap's keys are only known on the cluster, a zip's once it is read
    if not found:
        reader.report(
            "spec.handler",
            f"must name a module found in {where} (handler {handler} needs"
            f" {candidates[0]} or {candidates[1]})",
        )
