"""Local mode relays what functions print, whatever they print."""

from __future__ import annotations

import json

import yaml

from support.manifests import inline_function

LOUD = """
def handler(event, context):
    print("x" * event["size"])
    print("after the long line")
    return "ok"
"""


def test_a_line_over_64_kib_is_cut_and_the_function_keeps_answering(local_mode):
    local = local_mode(yaml.safe_dump(inline_function("loud", LOUD)))
    for size in (200_000, 10):
        answer = local.client.post(
            "/2015-03-31/functions/loud/invocations", content=json.dumps({"size": size})
        )
        assert answer.status_code == 200, local.output()
        assert answer.json() == "ok"
    cut = local.wait_for_line("[line cut: over 64 KiB]")
    assert len(cut) < 70_000
    local.wait_for_line("after the long line")
    local.wait_for_line("x" * 10)
