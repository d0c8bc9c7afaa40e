"""SAM's Layers as spec.layers (api/sam/layers.py): a Ref to the template's LayerVersion with its
zip on S3 maps, in order, after Globals' layers; published ARNs, layer folders and a sixth layer
are listed as not mapped; a mapped LayerVersion is not listed again."""

from __future__ import annotations

from kubelambda.api import parse_function
from kubelambda.api.sam import Kind
from unit.api.sam.test_convert import convert, function, listed, message, spec

DEPS = """
Deps:
  Type: AWS::Serverless::LayerVersion
  Properties:
    ContentUri: s3://layer-bucket/deps.zip
Tools:
  Type: AWS::Lambda::LayerVersion
  Properties:
    Content: {S3Bucket: layer-bucket, S3Key: tools.zip, S3ObjectVersion: "3"}
Folder:
  Type: AWS::Serverless::LayerVersion
  Properties:
    ContentUri: layers/common/
"""


def test_layers_on_s3_map_in_order_and_their_resources_are_used() -> None:
    conversion = convert(function("Layers: [!Ref Deps, !Ref Tools]") + DEPS)

    layers = spec(conversion, "fn")["layers"]
    assert layers == [
        {"s3": {"bucket": "layer-bucket", "key": "deps.zip"}},
        {"s3": {"bucket": "layer-bucket", "key": "tools.zip", "versionId": "3"}},
    ]
    assert "layer Deps (spec.layers[].s3) is read from AWS S3" in message(
        conversion, "Fn", "Layers"
    )
    assert ("Deps", "") not in listed(conversion) and ("Tools", "") not in listed(conversion)
    assert ("Deps", "") in listed(conversion, Kind.IGNORED)
    parsed = parse_function(conversion.objects[0])
    assert [layer.key for layer in parsed.layers] == ["deps.zip", "tools.zip"]


def test_globals_layers_come_first() -> None:
    conversion = convert(
        function("Layers: [!Ref Tools]") + DEPS,
        head="Globals:\n  Function:\n    Layers: [arn:aws:lambda:us-east-1:1:layer:global:1]\n",
    )

    assert [layer["s3"]["key"] for layer in spec(conversion, "fn")["layers"]] == ["tools.zip"]
    assert "layer:global:1 is a published layer, which cannot be fetched" in message(
        conversion, "Fn", "Layers"
    )


def test_what_cannot_be_fetched_is_listed() -> None:
    conversion = convert(
        function("Layers: [!Ref Folder, arn:aws:lambda:us-east-1:1:layer:x:1, !Ref Nowhere]") + DEPS
    )

    assert "layers" not in spec(conversion, "fn")
    found = message(conversion, "Fn", "Layers")
    assert "layer Folder's ContentUri is not a zip on S3" in found
    assert "layer:x:1 is a published layer" in found
    assert "not a layer of this template" in found
    assert ("Folder", "") in listed(conversion)  # not used by any function's spec


def test_a_sixth_layer_is_not_mapped() -> None:
    six = "\n".join(
        f"L{i}:\n  Type: AWS::Serverless::LayerVersion\n  Properties:\n"
        f"    ContentUri: s3://layer-bucket/l{i}.zip"
        for i in range(6)
    )
    refs = ", ".join(f"!Ref L{i}" for i in range(6))

    conversion = convert(function(f"Layers: [{refs}]") + six + "\n")

    assert len(spec(conversion, "fn")["layers"]) == 5
    assert "6 layers; Lambda and kubelambda take 5" in message(conversion, "Fn", "Layers")
