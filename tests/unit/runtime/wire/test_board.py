"""The board: what a worker posts in shared memory is what the server reads, in another mapping."""

from __future__ import annotations

import time

from kubelambda_runtime.wire import board as states
from kubelambda_runtime.wire.board import Board
from kubelambda_runtime.wire.histogram import DURATION_BUCKETS


def test_postings_cross_between_mappings_of_one_board():
    server = Board.create(2)
    worker = Board(server.fd, 2)  # as a worker maps the descriptor it was passed
    assert server.posting(1).state == states.IDLE
    worker.begin(1, request_id="req-1", deadline=1234.5, started=7.25)
    posting = server.posting(1)
    assert (posting.state, posting.deadline, posting.started, posting.request_id) == (
        states.RUNNING,
        1234.5,
        7.25,
        "req-1",
    )
    assert server.state(0) == states.IDLE
    worker.finish(1, outcome="success", duration=0.003)
    assert server.state(1) == states.RESPONDING
    worker.idle(1)
    assert server.state(1) == states.IDLE


def test_begun_moves_with_each_invocation():
    server = Board.create(1)
    before = server.begun(0)
    server.begin(0, request_id="a", deadline=time.time(), started=0.0)
    server.begin(0, request_id="b", deadline=time.time(), started=0.0)
    assert server.begun(0) == before + 2


def test_counts_are_summed_over_slots_and_bucketed_like_the_histogram():
    board = Board.create(3)
    board.finish(0, outcome="success", duration=0.004)
    board.finish(2, outcome="success", duration=2.0)
    board.finish(2, outcome="error", duration=0.02)
    board.finish(1, outcome="bad_request", duration=0.0)
    outcomes, durations = board.counts()
    assert outcomes == {"success": 2, "error": 1, "bad_request": 1}
    assert sum(durations.counts) == 3  # a bad request has no duration
    assert abs(durations.total - 2.024) < 1e-9
    assert durations.counts[DURATION_BUCKETS.index(0.005)] == 1
    assert durations.counts[DURATION_BUCKETS.index(0.025)] == 1
    assert durations.counts[DURATION_BUCKETS.index(2.5)] == 1


def test_a_long_request_id_is_cut_not_spilled_into_the_counts():
    board = Board.create(1)
    board.begin(0, request_id="x" * 100, deadline=0.0, started=0.0)
    assert board.posting(0).request_id == "x" * 64
    assert board.counts()[0] == {}
