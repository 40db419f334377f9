"""What ``cidx-auth demo`` prints without a terminal: a line at every 5 s mark, in words,
and a summary that explains the faults (issue 22, item 9). Pure functions: no sleeping."""

from __future__ import annotations

from pathlib import Path

import pytest

from cidx_auth.app.demo import Tally, explain, last_line, marks_due, progress_line


@pytest.mark.parametrize(("now", "shown", "due"), [
    (100.0, 0, []),            # the start: nothing yet
    (104.99, 0, []),
    (105.0, 0, [5]),           # a mark exactly reached
    (105.3, 5, []),            # reported already
    (110.2, 5, [10]),          # a turn that began before the mark and ended after it
    (121.0, 5, [10, 15, 20]),  # a turn that overran several: the demo reports the last
    (130.0, 10, [15, 20, 25, 30]),
    (159.9, 55, []),
    (160.0, 55, [60]),
])
def test_the_marks_due_from_the_start_and_now(now: float, shown: int, due: list[int]) -> None:
    assert marks_due(100.0, now, shown) == due


def test_every_mark_of_a_run_is_reported_whatever_the_length_of_a_turn() -> None:
    """The old rule (a mark between this turn and 0.25 s before it) skipped a mark
    whenever a turn took longer than 0.25 s; the marks due do not depend on the turn."""
    for turn in (0.25, 0.3, 0.7, 1.9):
        shown, reported, now = 0, [], 0.0
        while now < 60:
            due = marks_due(0.0, now, shown)
            if due:
                shown = due[-1]
                reported += due
            now += turn
        assert reported == list(range(5, 60, 5)), turn


def test_a_progress_line_is_words_not_python() -> None:
    tally = Tally(ok=147, failed=0)
    stats = {"logins": 1, "refreshes": 3, "replays": 0}
    line = progress_line(10, tally, stats, {"revoked": 4.2, "errors": 8.1})
    assert line == ("  10 s: 147 queries ok, 0 failed; the server saw 1 login, 3 refreshes, "
                    "0 replays; faults so far: refresh tokens revoked at 4 s; a burst of "
                    "2 503s at 8 s")
    assert "faults so far: none" in progress_line(5, tally, stats, {})
    assert not any(mark in line for mark in "[]'{}")


def test_the_summary_names_each_fault_and_what_the_client_did() -> None:
    said = "\n".join(explain({"revoked": 4.0, "errors": 8.0},
                             {"failed_refreshes": 1, "faults_fired": 2},
                             {"failures": 1, "logins": 1, "refreshes": 5, "relogins": 1},
                             failed=0))
    assert "at 4 s, the user's refresh tokens were revoked" in said
    assert ("the server refused 1 refresh with a revoked token, and the client logged in "
            "again with the stored password (1 login)") in said
    assert "at 8 s, a burst of 2 503 answers to /api/query" in said
    assert "the server sent 2 503s, and the client sent those queries again" in said
    assert "client counters: failures 1, logins 1, refreshes 5, relogins 1" in said
    assert "so no query failed: that is the recovery the demo shows" in said


def test_the_summary_says_what_a_short_run_did_not_reach_and_explains_no_failure_it_lacks(
) -> None:
    said = "\n".join(explain({"revoked": 2.0}, {}, {"failures": 0}, failed=0))
    assert "a burst of 2 503 answers to /api/query (a server in trouble): not reached" in said
    assert "recovery" not in said  # no failures counted: nothing to explain
    failing = "\n".join(explain({}, {}, {"failures": 2}, failed=3))
    assert "recovery" not in failing  # queries did fail: not "expected"


def test_the_servers_last_line_is_bounded_and_printable(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_bytes(b"x" * 5000 + b"\nTraceback...\nImportError: no \x1b]52;c;aGk=\x07hypercorn"
                    b"\n\n")
    assert last_line(log) == "ImportError: no ]52;c;aGk=hypercorn"
    log.write_text("E" * 1000 + "\n")
    assert last_line(log, limit=50) == "E" * 47 + "..."
    assert last_line(tmp_path / "absent") == ""
