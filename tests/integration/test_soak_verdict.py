"""The soak's verdict on recorded runs (``make soak``, ``tests/soak``): which failures it
excuses, the goals it checks, its fault plan, and how it records a real ``cidx-auth``
call. The soak itself runs for minutes and is not part of the suite; these pin the logic
that decides whether it passed.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.soak.fleet import SoakHost
from tests.soak.plan import KINDS, make_plan
from tests.soak.report import render, rerun
from tests.soak.verdict import (
    KILLED,
    NO_STORE,
    UNAVAILABLE,
    Call,
    Identity,
    Verdict,
    Window,
    breaker_grace,
    excuse,
    startup_interrupt,
)
from tests.soak.workers import Recorder, Running, Workers

pytestmark = [pytest.mark.slow]

BREAKER = ("cidx-auth: error: server unavailable: this machine's circuit breaker stopped "
           "the call (nothing was sent) after 5 failed calls in a row; next attempt after "
           "12:00:30, when the first command probes the server; to try now, run `cidx-auth "
           "login` (it resets the breaker)")
LOGIN_LIMIT = ("cidx-auth: error: http://127.0.0.1:8090 is limiting login attempts (Too many "
               "login attempts. Please try again later.); try again in 5 s")


def failed(start: float, end: float, line: str = "cidx-auth: error: boom", host: str = "h1",
           killed: str = "", code: int = 4) -> Call:
    return Call(host, "cli-0", "query", start, end, code, "", line, killed=killed)


def answered(start: float, end: float, host: str = "h1", rss_kb: int = 1000) -> Call:
    return Call(host, "cli-0", "query", start, end, 0, rss_kb=rss_kb)


DOWN = Window("server-restart", 100.0, 110.0, effect=UNAVAILABLE)
READ_ONLY = Window("store-read-only", 200.0, 210.0, hosts=("h1",), effect=NO_STORE)


# Excuses ------------------------------------------------------------------------------


def test_a_failure_overlapping_an_outage_is_the_servers() -> None:
    assert excuse(failed(95.0, 101.0), [DOWN]) == "the server was down or answering 503/429"
    assert excuse(failed(109.0, 111.0), [DOWN]) is not None


@pytest.mark.parametrize("code", [1, 3, 5])
def test_only_an_unavailable_server_is_excused_by_an_outage(code: int) -> None:
    """A refused token, a store not written or a crash during an outage is the client's."""
    assert excuse(failed(102.5, 103.0, code=code), [DOWN]) is None


def test_a_failure_well_clear_of_every_window_counts_against_the_client() -> None:
    assert excuse(failed(50.0, 60.0), [DOWN, READ_ONLY]) is None
    assert excuse(failed(150.0, 151.0), [DOWN, READ_ONLY]) is None


def test_the_breaker_is_excused_only_for_as_long_as_the_outage_could_have_opened_it() -> None:
    assert breaker_grace(DOWN) == 30.0  # a 10 s outage: one opening of 30 s
    assert excuse(failed(135.0, 136.0, BREAKER), [DOWN]) is not None
    assert excuse(failed(145.0, 146.0, BREAKER), [DOWN]) is None
    # The same moment, but another error than the breaker's: the server was up.
    assert excuse(failed(135.0, 136.0), [DOWN]) is None


@pytest.mark.parametrize(("seconds", "retry_after", "grace"), [
    (10.0, 0.0, 30.0),   # the first opening
    (45.0, 0.0, 60.0),   # one probe failed during the outage: doubled
    (95.0, 0.0, 240.0),  # three failed probes
    (3600.0, 0.0, 300.0),  # capped, as the client caps it
    (2.0, 5.0, 35.0),    # a Retry-After lengthens the opening
])
def test_the_breaker_grace_follows_the_clients_open_periods(
    seconds: float, retry_after: float, grace: float
) -> None:
    window = Window("burst-503", 0.0, seconds, effect=UNAVAILABLE, retry_after=retry_after)
    assert breaker_grace(window) == grace


def test_the_login_limit_is_excused_only_while_the_hosts_store_could_not_be_written() -> None:
    during = failed(205.0, 206.0, LOGIN_LIMIT)
    assert excuse(during, [READ_ONLY]) is not None
    assert excuse(failed(265.0, 266.0, LOGIN_LIMIT), [READ_ONLY]) is not None  # the refill
    assert excuse(failed(285.0, 286.0, LOGIN_LIMIT), [READ_ONLY]) is None
    assert excuse(failed(205.0, 206.0, LOGIN_LIMIT, host="h2"), [READ_ONLY]) is None
    assert excuse(failed(205.0, 206.0), [READ_ONLY]) is None  # any other failure is ours


def test_a_refusal_for_a_probe_out_is_excused_for_90_s_after_the_soak_killed_one() -> None:
    probing = ("cidx-auth: error: server unavailable: this machine's circuit breaker stopped "
               "the call (nothing was sent) after 5 failed calls in a row; another command is "
               "probing the server now; next attempt after 12:01:30 at the latest")
    kill = Window("kill9-mid-refresh", 300.0, 305.0, hosts=("h1",), effect=KILLED)
    assert excuse(failed(380.0, 381.0, probing), [kill]) is not None
    assert excuse(failed(400.0, 401.0, probing), [kill]) is None  # past the 90 s
    assert excuse(failed(380.0, 381.0, probing, host="h2"), [kill]) is None
    assert excuse(failed(380.0, 381.0, BREAKER), [kill]) is None  # an open circuit: no
    sigint = Window("sigint-mid-refresh", 300.0, 305.0, hosts=("h1",))
    assert excuse(failed(380.0, 381.0, probing), [sigint]) is None  # it gives it back


def test_token_refresh_stopping_on_an_unreadable_store_is_excused_only_then() -> None:
    unreadable = ("cidx-auth: error: could not read the session from Redis at "
                  "redis+sentinel://127.0.0.1:1/cidx/0 (ConnectionError; check that it is "
                  "running and reachable)")
    failover = Window("redis-failover", 100.0, 110.0, hosts=("h1",), effect=NO_STORE)
    refresh = Call("h1", "chaos", "token --refresh", 105.0, 106.0, 5, "", unreadable)
    assert excuse(refresh, [failover]) is not None
    assert excuse(Call("h1", "cli-0", "query", 105.0, 106.0, 5, "", unreadable),
                  [failover]) is None  # every other command rides the outage out
    assert excuse(Call("h1", "chaos", "token --refresh", 150.0, 151.0, 5, "", unreadable),
                  [failover]) is None


def test_a_process_the_soak_signalled_is_excused_and_a_success_needs_no_excuse() -> None:
    assert excuse(failed(1.0, 2.0, killed="SIGTERM", code=143), []) == \
        "the soak sent it SIGTERM"
    assert excuse(answered(100.0, 101.0), [DOWN]) is None


def test_a_window_that_changes_nothing_excuses_nothing() -> None:
    jump = Window("clock-jump", 0.0, 1000.0, detail="the server's clock +600 s")
    assert excuse(failed(10.0, 20.0), [jump]) is None


# Ctrl-C before cidx-auth's code runs ---------------------------------------------------

IMPORTING_ENTRY = """Traceback (most recent call last):
  File "/venv/bin/cidx-auth", line 3, in <module>
    from cidx_auth.app.entry import main
  File "/src/cidx_auth/app/entry.py", line 26, in <module>
    import signal
  File "/usr/lib/python3.11/signal.py", line 7, in <module>
    _IntEnum._convert_(
KeyboardInterrupt
"""
STARTING_PYTHON = """Fatal Python error: init_import_site: Failed to import the site module
Python runtime state: initialized
Traceback (most recent call last):
  File "<frozen site>", line 616, in <module>
  File "<frozen importlib._bootstrap_external>", line 1131, in get_data
KeyboardInterrupt
"""
IN_MAIN = """Traceback (most recent call last):
  File "/venv/bin/cidx-auth", line 8, in <module>
    sys.exit(main())
  File "/src/cidx_auth/app/entry.py", line 229, in main
    signal.signal(signal.SIGTERM, _on_sigterm)
KeyboardInterrupt
"""


@pytest.mark.parametrize(("stderr", "early"), [
    (IMPORTING_ENTRY, True),
    (STARTING_PYTHON, True),
    (IN_MAIN, False),  # cidx-auth's main had started: its own handler should have caught it
    ("cidx-auth: interrupted\n", False),
    ("Traceback (most recent call last):\n  ...\nValueError: boom\n", False),
])
def test_only_a_ctrl_c_before_the_entry_point_runs_is_pythons_start_up(
    stderr: str, early: bool
) -> None:
    assert startup_interrupt(stderr) is early


def test_a_start_up_interrupt_is_reported_apart_and_misses_no_goal() -> None:
    early = Call("h1", "cli-0", "token", 3.0, 3.1, -2, "", "KeyboardInterrupt",
                 killed="SIGINT", startup_interrupt=True)
    run = verdict([answered(1.0, 2.0), early])
    assert run.tracebacks == [] and run.missed() == []
    assert any(line.startswith("Ctrl-C before cidx-auth's code ran: 1")
               for line in render(run, 0.0, 60, [], Counter()))


# Goals --------------------------------------------------------------------------------


def verdict(calls: list[Call], windows: tuple[Window, ...] = (), replays: int = 0,
            elsewhere: tuple[str, ...] = ()) -> Verdict:
    identities = [Identity("alice", ("h1", "h2"), logins=2, refreshes=10, replays=replays)]
    return Verdict(seed=7, seconds=120.0, lifetime=30.0, calls=calls, windows=list(windows),
                   identities=identities, replays=replays, process_rss_kb={"lib": 2048},
                   tracebacks_elsewhere=elsewhere)


def test_a_clean_run_meets_every_goal() -> None:
    run = verdict([answered(1.0, 2.0), failed(101.0, 102.0)], (DOWN,))
    assert run.missed() == [] and run.exit_code == 0


@pytest.mark.parametrize(("run", "missed"), [
    (verdict([answered(1.0, 2.0)], replays=1), "1 refresh-token replay(s) (goal 0)"),
    (verdict([answered(1.0, 2.0), failed(50.0, 51.0)]),
     "1 call(s) failed while a valid path existed (goal 0)"),
    (verdict([answered(1.0, 2.0), Call("h1", "cli-0", "token", 3.0, 4.0, 1, "", "x", True)]),
     "1 traceback(s) (goal 0)"),
    (verdict([answered(1.0, 2.0)], elsewhere=("h1 library worker: Traceback",)),
     "1 traceback(s) (goal 0)"),
    (verdict([failed(101.0, 102.0)], (DOWN,)), "no query succeeded: the soak tested nothing"),
])
def test_each_missed_goal_fails_the_run(run: Verdict, missed: str) -> None:
    assert missed in run.missed()
    assert run.exit_code == (3 if run.replays else 1)  # a replay: the promise broken


def test_the_figures_come_from_the_records() -> None:
    run = verdict([answered(0.0, 1.0, rss_kb=50_000), answered(5.0, 12.5),
                   Call("h2", "lib-task-0", "repos", 1.0, 30.0, 0)])
    slowest = run.slowest_query()
    assert slowest is not None and slowest.seconds == 7.5  # a query, not the slow `repos`
    assert run.largest_process() == ("h1 cli-0 (query)", 50_000)
    # 12 auth calls in 120 s of 30 s tokens: 3 per lifetime.
    assert run.identities[0].auth_calls_per_lifetime(run.seconds, run.lifetime) == 3.0


def test_the_report_names_the_seed_the_rerun_and_each_unexcused_failure() -> None:
    stray = failed(50.0, 51.0, "cidx-auth: error: the lock timed out", host="file-bob")
    run = verdict([answered(1.0, 2.0), stray], (DOWN,))
    lines = render(run, 0.0, 60, [], Counter({"redis-failover": 1}))
    text = "\n".join(lines)
    assert rerun(60, 7) == "make soak SOAK_SECONDS=60 SOAK_SEED=7"
    assert "make soak SOAK_SECONDS=60 SOAK_SEED=7" in lines[-1]
    assert "file-bob cli-0 query at +50.0 s, 1.0 s, exit 4: cidx-auth: error: the lock " \
           "timed out" in text
    assert "redis-failover       0 (and 1 skipped)" in text
    assert lines[-2].startswith("verdict: FAILED: 1 call(s) failed")


# The plan -----------------------------------------------------------------------------


def test_the_plan_is_the_seeds_alone_covers_every_kind_and_leaves_the_tail_quiet() -> None:
    plan = make_plan(42, 600)
    assert plan == make_plan(42, 600)
    assert plan != make_plan(43, 600)
    assert sorted(planned.kind for planned in plan[:len(KINDS)]) == sorted(KINDS)
    assert all(planned.at < 600 - 30 for planned in plan)
    assert [planned.at for planned in plan] == sorted(planned.at for planned in plan)
    short = make_plan(42, 60)
    assert all(planned.at < 60 - 12 for planned in short)


# A real call, recorded ----------------------------------------------------------------


def test_a_cli_call_is_recorded_with_its_exit_code_last_line_and_memory(tmp_path: Path) -> None:
    host = SoakHost("h1", "alice", tmp_path / "nowhere", tmp_path / "config")
    workers = Workers(Running(), Recorder(), until=0.0)
    call = workers.run_cli(host, "cli-0", "query", ("query", "anything"))
    assert (call.code, call.killed, call.traceback) == (3, "", False)
    assert "cidx-auth login" in call.last_line
    assert call.rss_kb > 1000 and call.end >= call.start
    assert workers.recorder.calls == [call]


@pytest.mark.posix
def test_a_call_the_soak_signals_is_recorded_as_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = SoakHost("h1", "alice", tmp_path, tmp_path / "config")
    workers = Workers(Running(), Recorder(), until=0.0)
    script = tmp_path / "cidx-auth"  # stands in for the CLI: waits to be stopped
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    script.chmod(0o700)
    monkeypatch.setattr(SoakHost, "argv", lambda self, *args: [str(script)])
    recorded: list[Call] = []
    thread = threading.Thread(
        target=lambda: recorded.append(workers.run_cli(host, "cli-0", "query", ("query",))))
    thread.start()
    while not workers.running.on_hosts(("h1",)):
        time.sleep(0.01)
    assert workers.running.signal_hosts(("h1",), signal.SIGKILL) == 1
    thread.join(30)
    assert recorded[0].killed == "SIGKILL" and recorded[0].code == -signal.SIGKILL
    assert excuse(recorded[0], []) == "the soak sent it SIGKILL"
    assert workers.running.on_hosts() == []
