"""A function's ``Layers`` as ``spec.layers``: each a Ref to one of the template's LayerVersion
resources whose content is a zip on S3 (ContentUri s3://…, or Content's S3Bucket and S3Key).
Published layer ARNs and layer folders cannot be fetched, and are listed as not mapped.

functions.py calls ``function_layers`` once per function; the LayerVersions it maps are marked
used, so convert.py does not list them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from kubelambda.api.sam.code import S3_NOTE, s3_location
from kubelambda.api.sam.resources import logical_ref, resource_type
from kubelambda.api.sam.scope import Scope, mapping
from kubelambda.api.sam.values import Unresolved

__all__ = ["LAYER_TYPES", "MAX_LAYERS", "function_layers"]

LAYER_TYPES: Final = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
MAX_LAYERS: Final = 5  # Lambda's, and the CRD's bound on spec.layers


def function_layers(
    scope: Scope, logical_id: str, props: Mapping[str, object]
) -> list[dict[str, object]]:
    """``spec.layers`` for the function's Layers, in order; what cannot be mapped is reported
    and left out."""
    resolved = props.get("Layers")
    if resolved is None:
        return []
    if not isinstance(resolved, list):
        scope.report.not_mapped(logical_id, "Layers", f"must be a list, not {resolved!r}")
        return []
    # A Ref to a LayerVersion only resolves to its ARN once deployed: the raw value says which
    # resource it is. Globals' layers come first in the merged list (SAM concatenates lists),
    # so the function's own raw Layers pair with the end of it.
    own = mapping(mapping(scope.resolver.resources.get(logical_id)).get("Properties")).get("Layers")
    raw: list[object] = [None] * len(resolved)
    if isinstance(own, list) and len(own) <= len(resolved):
        raw[len(resolved) - len(own) :] = own
    layers: list[dict[str, object]] = []
    for value, source in zip(resolved, raw, strict=True):
        layer = _layer(scope, logical_id, "Layers", value, source)
        if layer is not None:
            layers.append({"s3": layer})
    if len(layers) > MAX_LAYERS:
        scope.report.not_mapped(
            logical_id, "Layers", f"{len(layers)} layers; Lambda and kubelambda take {MAX_LAYERS}"
        )
        return layers[:MAX_LAYERS]
    return layers


def _layer(
    scope: Scope, logical_id: str, prop: str, value: object, raw: object
) -> dict[str, object] | None:
    report = scope.report
    if isinstance(value, str) and value.startswith("arn:"):
        report.not_mapped(
            logical_id,
            prop,
            f"{value} is a published layer, which cannot be fetched: put its zip on S3 and list"
            " it in spec.layers",
        )
        return None
    target = logical_ref(raw) if isinstance(value, Unresolved) else None
    resource = mapping(scope.resolver.resources.get(target or ""))
    if target is None or resource_type(resource) not in LAYER_TYPES:
        reason = value.reason if isinstance(value, Unresolved) else repr(value)
        report.not_mapped(logical_id, prop, f"not a layer of this template ({reason})")
        return None
    properties = mapping(resource.get("Properties"))
    content_prop = "ContentUri" if "ContentUri" in properties else "Content"
    content = scope.resolver.resolve(properties.get(content_prop))
    location = s3_location(content) if scope.plain(target, content_prop, content) else None
    if location is None:
        report.not_mapped(
            logical_id,
            prop,
            f"layer {target}'s {content_prop} is not a zip on S3 ({content!r}): kubelambda"
            " reads layers as zips on S3 (zip the folder and upload it, as sam package does)",
        )
        return None
    scope.used.add(target)
    report.note(logical_id, prop, f"layer {target} (spec.layers[].s3) is {S3_NOTE}")
    return location
