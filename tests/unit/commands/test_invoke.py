"""`kubelambda invoke`'s argument handling: what is refused before any call (the calls
themselves: tests/integration/cli/test_invoke.py)."""

from __future__ import annotations

import pytest

from kubelambda.commands.invoke import run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hello", "--payload", "{oops"], "kubelambda invoke: --payload '{oops' is not JSON"),
        (["hello", "--url", "localhost:8080"], "kubelambda invoke: --url 'localhost:8080' is not"),
        (["a.b", "-n", "shop"], "kubelambda invoke: --namespace goes with a plain NAME"),
    ],
)
def test_bad_arguments_exit_2_before_any_call(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(argv) == 2
    assert capsys.readouterr().err.startswith(message)


def test_a_log_tail_of_an_event_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run(["worker", "--async", "--log-type", "Tail"])
    assert exited.value.code == 2
    assert "--log-type Tail needs a synchronous invocation" in capsys.readouterr().err
