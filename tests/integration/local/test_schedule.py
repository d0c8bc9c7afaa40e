"""A schedule Trigger in `kubelambda local`: its ticks invoke the function asynchronously with
EventBridge's Scheduled Event, one invocation per tick (the clock driven 60 times as fast, the
same code as in production)."""

from __future__ import annotations

import json
from pathlib import Path

from support.waiting import wait_for

SCHEDULED = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: tick}}
spec:
  runtime: python3.12
  handler: app.handler
  env: [{{name: SEEN, value: "{seen}"}}]
  code:
    inline:
      files:
        app.py: |
          import json, os
          def handler(event, context):
              path = os.path.join(os.environ["SEEN"], context.aws_request_id)
              with open(path, "w") as out:
                  json.dump(event, out)
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: every-minute}}
spec:
  function: tick
  schedule: {{expression: rate(1 minute)}}
"""


def test_each_tick_invokes_the_function_once_with_a_scheduled_event(local_mode, tmp_path: Path):
    seen = tmp_path / "seen"
    seen.mkdir()
    local = local_mode(SCHEDULED.format(seen=seen), "--schedule-speed", "60")
    assert any("schedule: rate(1 minute) (UTC)" in line for line in local.lines)

    def events() -> list[dict[str, object]] | None:
        found = [json.loads(p.read_text()) for p in seen.iterdir()]
        return found if len(found) >= 3 else None

    found = wait_for(events, timeout=60, what="three ticks handled")
    for event in found:
        assert event["detail-type"] == "Scheduled Event"
        assert event["source"] == "aws.events"
        assert event["resources"] == [
            "arn:aws:events:us-east-1:000000000000:rule/default.every-minute"
        ]
        assert event["detail"] == {}
    times = sorted(str(event["time"]) for event in found)
    assert len(set(times)) == len(times), "one invocation per tick"
    assert all(t.endswith(":00Z") for t in times)  # ticks on whole minutes of the fast clock
    # Local mode's lines reach its output through a writer thread: they may follow the files.
    wait_for(
        lambda: local.output().count("schedule every-minute fired") >= 3,
        timeout=10,
        what="local mode's line for each tick fired",
    )
