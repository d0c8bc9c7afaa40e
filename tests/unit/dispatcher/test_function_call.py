"""dispatcher/function_call.py: what one try of a job came to, its answer read only when asked
for."""

from __future__ import annotations

import pytest

from kubelambda.dispatcher.function_call import Outcome


@pytest.mark.parametrize(
    ("raw", "body"),
    [(b'{"ok": true}', {"ok": True}), (b"plain \xff", "plain \ufffd"), (b"", "")],
)
def test_an_answer_is_read_only_when_asked_for_and_as_json_when_it_is(
    raw: bytes, body: object
) -> None:
    # Kept as bytes until asked for: most delivered events' answers go nowhere.
    outcome = Outcome(status=200, raw=raw)
    assert outcome.body == body
    assert outcome == Outcome(status=200, body=body)
