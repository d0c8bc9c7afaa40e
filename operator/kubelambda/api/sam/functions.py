"""An ``AWS::Serverless::Function`` (Globals merged in, intrinsics resolved) as a Function
manifest: runtime, handler, code, timeout, memory, environment, scaling and delivery; every
other property is reported as ignored or not mapped. Its events are events.py's and http.py's.
A Python runtime or a custom one (provided.al2023, provided.al2: the code's ``bootstrap``).

convert.py calls ``convert_function`` once per function resource.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final

from kubelambda.api.env import RESERVED_NAMES, RESERVED_PREFIX
from kubelambda.api.function import LAMBDA_NAME_ANNOTATION
from kubelambda.api.patterns import ANY_HANDLER, CUSTOM_RUNTIMES, HANDLER, IMAGE, RUNTIMES
from kubelambda.api.sam.code import S3_NOTE, folder_code, inline_code, s3_location
from kubelambda.api.sam.destinations import destination
from kubelambda.api.sam.layers import function_layers
from kubelambda.api.sam.scope import Scope, mapping

# Properties with no meaning on kubelambda, and why leaving them out changes nothing.
IGNORED: Final = {
    "Policies": "IAM has no meaning here: give the code credentials through spec.env (valueFrom"
    " a Secret)",
    "Role": "IAM has no meaning here",
    "RolePath": "IAM has no meaning here",
    "PermissionsBoundary": "IAM has no meaning here",
    "AssumeRolePolicyDocument": "IAM has no meaning here",
    "Description": "descriptive only",
    "Tags": "AWS resource tags",
    "PropagateTags": "AWS resource tags",
    "Tracing": "AWS X-Ray is not offered; the code runs the same",
    "Architectures": "pods run on the cluster's nodes' architecture (pure Python runs on either)",
    "KmsKeyArn": "the environment is stored in the Function's spec (keep secrets in Secrets)",
    "LoggingConfig": "logs go to the pod's output (kubectl logs)",
    "RuntimeManagementConfig": "the operator's configuration picks the runtime image",
    "SnapStart": "not offered; start-up runs as usual",
    "RecursiveLoop": "no recursion detection",
    "VersionDescription": "no versions",
    "AutoPublishCodeSha256": "no versions",
    "CodeSigningConfigArn": "no code signing: the code is what the manifest holds",
}
# Properties the Function cannot carry, and what to do instead.
NOT_MAPPED: Final = {
    "VpcConfig": "pods reach the network their NetworkPolicy allows: list destinations in"
    " spec.network.egress",
    "AutoPublishAlias": "there are no versions or aliases: the Invoke API serves $LATEST only",
    "AutoPublishAliasAllProperties": "there are no versions or aliases",
    "DeploymentPreference": "no gradual deployments: a changed Function rolls out its Deployment",
    "FileSystemConfigs": "no EFS mounts",
    "EphemeralStorage": "/tmp is the pod's emptyDir, without a size of its own",
    "FunctionUrlConfig": "no function URLs: add an HTTP Trigger",
    "ImageConfig": "an image runs its own entrypoint and command",
    "DeadLetterQueue": "spec.delivery.deadLetter takes a Function or a URL: use EventInvokeConfig"
    " DestinationConfig.OnFailure (a Lambda function or an SQS queue) instead",
}
MAPPED: Final = frozenset(
    {
        "Handler",
        "Runtime",
        "CodeUri",
        "InlineCode",
        "PackageType",
        "ImageUri",
        "Timeout",
        "MemorySize",
        "Environment",
        "FunctionName",
        "Events",
        "ReservedConcurrentExecutions",
        "ProvisionedConcurrencyConfig",
        "EventInvokeConfig",
        "Layers",
    }
)
_PYTHON: Final = re.compile(r"^python3\.(\d+)$")
_MAX_REPLICAS: Final = 1000
_MAX_RESERVED: Final = 1_000_000  # the CRD's bound on spec.reservedConcurrency
_DEFAULT_MAX_REPLICAS: Final = 10  # the CRD's default spec.scaling.maxReplicas


def convert_function(
    scope: Scope, logical_id: str, props: Mapping[str, object]
) -> dict[str, object] | None:
    """The Function for one function resource, or None (reported) when it cannot be made."""
    report = scope.report
    for key in props:
        if key == "Architectures" and props.get("Runtime") in CUSTOM_RUNTIMES:
            # A bootstrap is native code: unlike Python, it runs on one architecture only.
            report.note(
                logical_id,
                key,
                "pods run on the cluster's nodes' architecture: build the bootstrap for it"
                " (GOARCH=amd64 or arm64)",
            )
        elif key in IGNORED:
            report.ignored(logical_id, key, IGNORED[key])
        elif key in NOT_MAPPED:
            report.not_mapped(logical_id, key, NOT_MAPPED[key])
        elif key not in MAPPED:
            report.not_mapped(logical_id, key, "not a property kubelambda knows")
    spec = _package(scope, logical_id, props)
    if spec is None:
        return None
    layers = function_layers(scope, logical_id, props)
    if layers:
        spec["layers"] = layers
    timeout = scope.integer(logical_id, "Timeout", props.get("Timeout"), low=1, high=900)
    if timeout is not None:
        spec["timeoutSeconds"] = timeout
    memory = scope.integer(logical_id, "MemorySize", props.get("MemorySize"), low=128, high=10240)
    if memory is not None:
        spec["memoryMB"] = memory
    env = _env(scope, logical_id, props.get("Environment"))
    if env:
        spec["env"] = env
    spec.update(_scaling(scope, logical_id, props))
    delivery = _delivery(scope, logical_id, mapping(props.get("EventInvokeConfig")))
    if delivery:
        spec["delivery"] = delivery
    name = scope.functions[logical_id]
    manifest = scope.manifest("Function", name, spec)
    lambda_name = scope.lambda_name_of[logical_id]
    if lambda_name != name:
        metadata = mapping(manifest["metadata"])
        manifest["metadata"] = {**metadata, "annotations": {LAMBDA_NAME_ANNOTATION: lambda_name}}
    return manifest


def _package(
    scope: Scope, logical_id: str, props: Mapping[str, object]
) -> dict[str, object] | None:
    """runtime, handler and code; or image."""
    report = scope.report
    if scope.text(logical_id, "PackageType", props.get("PackageType")) == "Image":
        image = scope.text(logical_id, "ImageUri", props.get("ImageUri"))
        if image is None or re.fullmatch(IMAGE, image) is None:
            report.not_mapped(
                logical_id,
                "ImageUri",
                "an image function needs the image's reference (sam build makes it from Metadata's"
                " Dockerfile): build and push the image, and set ImageUri or spec.image",
            )
            return None
        return {"image": image}
    runtime = _runtime(scope, logical_id, props.get("Runtime"))
    if runtime in CUSTOM_RUNTIMES:
        return _custom_package(scope, logical_id, props, runtime)
    handler = scope.text(logical_id, "Handler", props.get("Handler"))
    if handler is not None:
        # Lambda's Python bootstrap reads dir/module.handler as dir.module.handler.
        handler = handler.replace("/", ".")
        if re.fullmatch(HANDLER, handler) is None:
            report.not_mapped(logical_id, "Handler", f"{handler!r} is not module.function")
            handler = None
    elif "Handler" not in props:
        report.not_mapped(logical_id, "Handler", "is required for a Python function")
    if runtime is None or handler is None:
        return None
    code = _code(scope, logical_id, props, handler)
    if code is None:
        return None
    return {"runtime": runtime, "handler": handler, "code": code}


def _custom_package(
    scope: Scope, logical_id: str, props: Mapping[str, object], runtime: str
) -> dict[str, object] | None:
    """runtime, optional handler (passed to the bootstrap as _HANDLER) and code: a package
    holding the executable ``bootstrap``, as Lambda's OS-only runtimes take it."""
    report = scope.report
    package: dict[str, object] = {"runtime": runtime}
    if props.get("Handler") is not None:
        handler = scope.text(logical_id, "Handler", props["Handler"])
        if handler is not None and re.fullmatch(ANY_HANDLER, handler) is None:
            report.not_mapped(logical_id, "Handler", f"{handler!r} holds spaces")
            handler = None
        if handler is not None:
            package["handler"] = handler
    if props.get("InlineCode") is not None:
        report.not_mapped(
            logical_id,
            "InlineCode",
            f"{runtime} runs the code's executable bootstrap, which inline code cannot hold:"
            " set CodeUri to the built folder (kubelambda local) or a zip on S3",
        )
        return None
    value = props.get("CodeUri")
    if isinstance(value, Mapping) or (isinstance(value, str) and value.startswith("s3://")):
        location = s3_location(value) if scope.plain(logical_id, "CodeUri", value) else None
        if location is None:
            report.not_mapped(
                logical_id, "CodeUri", f"{value!r} is not an S3 location (s3://bucket/key)"
            )
            return None
        report.note(logical_id, "CodeUri", f"spec.code.s3 is {S3_NOTE}")
        package["code"] = {"s3": location}
        return package
    uri = "." if value is None else scope.text(logical_id, "CodeUri", value)
    if uri is None:
        return None
    folder = (scope.template_dir / uri).resolve()
    if not folder.is_dir():
        report.not_mapped(
            logical_id, "CodeUri", f"{folder} is not a folder (zip files are not read)"
        )
        return None
    if scope.code_mode != "path":
        report.not_mapped(
            logical_id,
            "CodeUri",
            f"{runtime} runs the code's executable bootstrap, which a cluster takes only in a"
            f" package: zip {folder} (with bootstrap at its top) onto S3 and set CodeUri to it,"
            " or serve the template with kubelambda local",
        )
        return None
    bootstrap = folder / "bootstrap"
    if not (bootstrap.is_file() and os.access(bootstrap, os.X_OK)):
        # sam build makes it (Metadata BuildMethod: go1.x, makefile); local mode does not build.
        report.note(
            logical_id,
            "CodeUri",
            f"{folder} holds no executable bootstrap yet: build it there (as sam build would);"
            " until then init fails with Runtime.InvalidEntrypoint",
        )
    package["code"] = {"path": os.path.relpath(folder, scope.template_dir)}
    return package


def _runtime(scope: Scope, logical_id: str, value: object) -> str | None:
    runtime = scope.text(logical_id, "Runtime", value)
    if runtime is None:
        if value is None:
            scope.report.not_mapped(logical_id, "Runtime", "is required for a Python function")
        return None
    if runtime in RUNTIMES or runtime in CUSTOM_RUNTIMES:
        return runtime
    match = _PYTHON.match(runtime)
    if match is None:
        scope.report.not_mapped(
            logical_id,
            "Runtime",
            f"{runtime}: kubelambda runs Python ({', '.join(RUNTIMES)}) and custom runtimes"
            f" ({', '.join(CUSTOM_RUNTIMES)}: a bootstrap the code holds); the function is not"
            " converted",
        )
        return None
    nearest = RUNTIMES[0] if int(match.group(1)) < int(RUNTIMES[0].split(".")[1]) else RUNTIMES[-1]
    scope.report.not_mapped(
        logical_id,
        "Runtime",
        f"{runtime} is not offered: converted with {nearest}, the nearest one (check the code"
        " runs on it)",
    )
    return nearest


def _code(
    scope: Scope, logical_id: str, props: Mapping[str, object], handler: str
) -> dict[str, object] | None:
    report = scope.report
    if props.get("InlineCode") is not None:
        source = scope.text(logical_id, "InlineCode", props["InlineCode"])
        return inline_code(handler, source) if source is not None else None
    value = props.get("CodeUri")
    if isinstance(value, Mapping) or (isinstance(value, str) and value.startswith("s3://")):
        location = s3_location(value) if scope.plain(logical_id, "CodeUri", value) else None
        if location is None:
            report.not_mapped(
                logical_id, "CodeUri", f"{value!r} is not an S3 location (s3://bucket/key)"
            )
            return None
        report.note(logical_id, "CodeUri", f"spec.code.s3 is {S3_NOTE}")
        return {"s3": location}
    uri: str | None = "."
    if value is None:
        # sam build reads the template's own folder when CodeUri is not given.
        report.note(logical_id, "CodeUri", "not given: the template's folder is the code")
    else:
        uri = scope.text(logical_id, "CodeUri", value)
    if uri is None:
        return None
    folder = (scope.template_dir / uri).resolve()
    return folder_code(
        folder,
        template_dir=scope.template_dir,
        mode=scope.code_mode,
        resource=logical_id,
        report=report,
    )


def _env(scope: Scope, logical_id: str, environment: object) -> list[dict[str, object]]:
    variables = mapping(mapping(environment).get("Variables"))
    env: list[dict[str, object]] = []
    for name, value in variables.items():
        prop = f"Environment.Variables.{name}"
        if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX):
            scope.report.not_mapped(logical_id, prop, "the runtime sets this variable itself")
            continue
        text = scope.text(logical_id, prop, value)
        if text is not None:
            env.append({"name": name, "value": text})
    return env


def _scaling(scope: Scope, logical_id: str, props: Mapping[str, object]) -> dict[str, object]:
    """spec.reservedConcurrency from ReservedConcurrentExecutions, and spec.scaling from
    ProvisionedConcurrencyConfig (warm pods, one invocation each, as on Lambda)."""
    report = scope.report
    limits: dict[str, object] = {}
    scaling: dict[str, int] = {}
    reserved = scope.integer(
        logical_id,
        "ReservedConcurrentExecutions",
        props.get("ReservedConcurrentExecutions"),
        low=0,
        high=_MAX_RESERVED,
    )
    if reserved is not None:
        limits["reservedConcurrency"] = reserved
        report.note(
            logical_id,
            "ReservedConcurrentExecutions",
            f"spec.reservedConcurrency {reserved}: beyond {reserved} invocations at once the"
            " gateway answers 429 TooManyRequestsException, and no more pods run"
            + (" (0: every invocation is throttled, as on Lambda)" if reserved == 0 else ""),
        )
    provisioned = mapping(props.get("ProvisionedConcurrencyConfig")).get(
        "ProvisionedConcurrentExecutions"
    )
    warm = scope.integer(
        logical_id,
        "ProvisionedConcurrencyConfig.ProvisionedConcurrentExecutions",
        provisioned,
        low=0,
        high=_MAX_REPLICAS,
    )
    if warm is not None and reserved is not None and warm > reserved:
        report.not_mapped(
            logical_id,
            "ProvisionedConcurrencyConfig",
            f"{warm} warm executions exceed ReservedConcurrentExecutions {reserved}; Lambda"
            " refuses that too",
        )
    elif warm is not None:
        scaling["minReplicas"] = warm
        # The warm pods must fit under maxReplicas.
        scaling["maxReplicas"] = max(warm, _DEFAULT_MAX_REPLICAS)
        report.note(
            logical_id,
            "ProvisionedConcurrencyConfig",
            f"spec.scaling.minReplicas {warm}: that many pods are kept running",
        )
    if scaling:
        limits["scaling"] = scaling
    return limits


def _delivery(scope: Scope, logical_id: str, config: Mapping[str, object]) -> dict[str, object]:
    delivery: dict[str, object] = {}
    at = "EventInvokeConfig"
    retries = scope.integer(
        logical_id, f"{at}.MaximumRetryAttempts", config.get("MaximumRetryAttempts"), low=0, high=2
    )
    if retries is not None:
        delivery["retries"] = retries
    age = scope.integer(
        logical_id,
        f"{at}.MaximumEventAgeInSeconds",
        config.get("MaximumEventAgeInSeconds"),
        low=60,
        high=21600,
    )
    if age is not None:
        delivery["maxEventAgeSeconds"] = age
    destinations = mapping(config.get("DestinationConfig"))
    for key, field in (("OnSuccess", "onSuccess"), ("OnFailure", "onFailure")):
        if key in destinations:
            target = destination(
                scope, logical_id, f"{at}.DestinationConfig.{key}", mapping(destinations[key])
            )
            if target is not None:
                delivery[field] = target
    for key in config:
        if key not in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
            scope.report.not_mapped(logical_id, f"{at}.{key}", "not a property kubelambda knows")
    return delivery
