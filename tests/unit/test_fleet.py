"""The fleet simulation measures what it claims: no replay and no failed request with
the store's rules kept, a replay as soon as confirmation is skipped, and the auth calls
a fault costs."""

from __future__ import annotations

import time
from dataclasses import replace

from cidx_auth.app.fleet import (
    INJECTED,
    Fleet,
    FleetPlan,
    FleetReport,
    describe,
    simulate_fleet,
)

SMALL = FleetPlan(hosts=3, per_host=5, hours=4.0, seed=11, query_every=5.0)
"""15 processes for 4 hours, asking often enough that some process asks within a few
seconds of any moment (the full fleet does with 1,000): a fraction of a second."""


def clean(report: FleetReport) -> None:
    assert report.replays == 0
    assert not report.failed
    assert report.unusable == 0


def test_a_fleet_without_faults_renews_once_per_renewal_due() -> None:
    report = simulate_fleet(SMALL.without_faults())
    clean(report)
    assert report.faults == {}
    assert report.renewal_every == 300.0
    due = report.seconds / report.renewal_every  # 48 in 4 h
    assert report.logins == 1  # the first request; refreshes from then on
    assert due - 1 <= report.auth_calls <= due + 1
    assert 1.0 <= report.per_renewal_due <= 1.05
    assert report.per_lifetime == report.per_renewal_due * 2
    assert report.ok


def test_with_faults_no_replay_no_failure_and_each_fault_costs_one_call_at_most() -> None:
    """A fault costs one auth call at most (a failover in flight: the login after the
    abandoned refresh), besides the login of each process that asks with nothing usable
    while a failover lasts (here: the processes starting during the first one)."""
    plan = replace(SMALL.stress_day(), lost_answer=0.1, death=0.1, failover_in_flight=0.2, lag=0.1,
                   lost_ack=0.1, failover_unreplicated=0.2, failovers_per_hour=1.0)
    report = simulate_fleet(plan)
    clean(report)
    for kind in ("lost_answer", "death_in_flight", "failover_in_flight", "lag", "lost_ack",
                 "failover_unreplicated", "failover_at_random", "lost_writes", "unavailable",
                 "no_replica"):
        assert report.faults[kind] > 0, kind
    assert report.events["refresh_failed"] > 0  # those asking during a failover kept theirs
    without_the_store = report.events["logged_in"] - 1  # the first login read the store
    failovers = sum(report.faults[kind] for kind in report.faults
                    if kind.startswith("failover") and kind != "failover_skipped")
    costly = report.faults["lost_answer"] + report.faults["death_in_flight"] + failovers
    due = report.seconds / report.renewal_every
    assert due <= report.auth_calls <= due + 1 + costly + without_the_store
    assert report.per_renewal_due > 1.05 and not report.ok  # faults this dense cost more


def test_the_default_day_has_one_failover_in_flight_and_one_losing_writes() -> None:
    """Each armed at a seeded moment and fired at the first chance after; no other
    failover, and the per-event faults at their rates."""
    fleet = Fleet(SMALL)
    armed = {kind: moments[0] - fleet.start for kind, moments in fleet.armed.items()}
    report = fleet.run()
    clean(report)
    assert [seen.kind for seen in report.failovers] == sorted(armed, key=armed.__getitem__)
    for seen in report.failovers:
        assert armed[seen.kind] <= seen.at < armed[seen.kind] + SMALL.lifetime
    assert report.faults["failover_in_flight"] == report.faults["failover_unreplicated"] == 1
    assert report.faults["failover_at_random"] == report.faults["failover_skipped"] == 0
    lost = {seen.kind: seen.lost_writes for seen in report.failovers}
    assert report.faults["lost_writes"] == sum(lost.values()) == lost["failover_unreplicated"] > 0
    assert report.faults["lag"] > 0 and report.faults["lost_ack"] > 0


def test_the_stress_day_draws_failovers_at_rates_and_arms_none() -> None:
    stress = FleetPlan().stress_day()
    assert (stress.failover_in_flight, stress.failover_unreplicated,
            stress.failovers_per_hour) == (0.02, 0.05, 0.25)
    assert stress.armed_in_flight == stress.armed_unreplicated == 0
    assert (stress.lost_answer, stress.death, stress.lag, stress.lost_ack) == (
        FleetPlan().lost_answer, FleetPlan().death, FleetPlan().lag, FleetPlan().lost_ack)
    assert not Fleet(replace(SMALL.stress_day(), hours=24.0)).armed["failover_in_flight"]
    assert [plan.day for plan in (FleetPlan(), stress, SMALL.without_faults(),
                                  replace(SMALL, lag=0.5))] == [
        "the default day", "the stress day", "no faults", "faults of its own"]


def test_a_failover_costs_a_login_per_process_with_nothing_usable_that_asks_meanwhile() -> None:
    """Requests so sparse that tokens expire between them: a process that asks while no
    primary answers has no token to fall back on and no lock to wait for, and logs in on
    its own, as the Redis store's users do."""
    plan = replace(SMALL.without_faults(), failovers_per_hour=2.0, query_every=600.0,
                   per_host=10)
    report = simulate_fleet(plan)
    clean(report)
    assert report.faults["failover_at_random"] > 0
    outage_logins = report.events["logged_in"] - 1  # the first login read the store
    assert outage_logins > report.faults["failover_at_random"]
    assert report.logins >= 1 + outage_logins


def test_skipping_the_confirmation_shows_as_replays() -> None:
    """The same fleet on a store whose writes count once the primary has them: a
    failover in flight loses the intent, and a crowd process sends the spent token."""
    plan = replace(SMALL.without_faults(), failover_in_flight=0.5, confirm_writes=False)
    fleet = Fleet(plan)
    report = fleet.run()
    assert report.replays > 0 and not report.ok
    assert report.events["replay_reported"] > 0
    fleet.server.expected_replays = report.replays
    confirmed = simulate_fleet(replace(plan, confirm_writes=True))
    clean(confirmed)
    assert confirmed.faults["failover_in_flight"] > 0


def test_a_process_with_nothing_usable_waits_out_a_dead_holders_lease() -> None:
    """Every refresh kills its process: the next one to renew waits for the lease, or
    keeps a still-valid token; nobody fails and nobody replays."""
    plan = replace(SMALL.without_faults(), death=1.0, query_every=240.0, hosts=1, per_host=4)
    report = simulate_fleet(plan)
    clean(report)
    assert report.faults["death_in_flight"] > 0 and report.waits > 0
    assert report.events["refresh_abandoned"] > 0


def test_a_seed_replays_the_same_run() -> None:
    plan = replace(SMALL, lost_answer=0.05, failover_in_flight=0.1)
    first, second = simulate_fleet(plan), simulate_fleet(plan)
    assert (first.logins, first.refreshes, first.faults, first.events) == (
        second.logins, second.refreshes, second.faults, second.events)
    assert first.requests == second.requests
    assert first.failovers == second.failovers


def test_the_report_names_each_figure_and_goal() -> None:
    report = simulate_fleet(replace(SMALL, hours=1.0))
    lines = describe(report)
    assert lines[0].startswith("fleet: 15 processes (5 on each of 3 hosts), 1 h simulated in ")
    assert lines[0].endswith(" s (building it included), seed 11")
    text = "\n".join(lines)
    assert "failed: 0 (goal 0)" in text and "replays: 0 (goal 0)" in text
    floor = "(floor 2.000 with a 300 s renewal window)"
    assert f"per lifetime {report.per_lifetime:.3f} {floor}" in text
    assert "goal of 1.0 to 1.05 auth calls per token lifetime is judged per renewal due" in text
    assert "auth calls per renewal due (goal: at most 1.05)" in text
    assert "\nfault plan, the default day: per refresh in flight, answer lost 1%, " in text
    assert "armed at a seeded moment, fired at the first chance after: 1 in flight, 1 " in text
    for kind in INJECTED:  # every kind, those that did not happen too
        assert f"\n  {kind} " in text
    seen = report.failovers
    assert len(seen) == 2 and "and the logins made meanwhile:" in text
    assert f"\n  {time.strftime('%H:%M:%S', time.gmtime(seen[0].at))}  {seen[0].kind} " in text
    judged = "(the auth-call goal judged per renewal due, not per lifetime)"
    if report.ok:
        assert lines[-1] == f"every goal met {judged}"
    else:
        assert lines[-1] == f"goal missed: {'; '.join(report.missed)} {judged}"


def test_a_missed_goal_is_named_with_its_figure() -> None:
    report = FleetReport(SMALL, seconds=3000.0, renewal_every=300.0, refreshes=11, replays=2)
    assert report.floor_per_lifetime == 2.0
    assert report.missed == ["1.100 auth calls per renewal due > 1.05", "2 replays"]
    assert describe(report)[-1].startswith("goal missed: 1.100 auth calls per renewal due > "
                                           "1.05; 2 replays (")
    assert "faults injected: none" in describe(report)


def test_a_crowd_with_nothing_usable_waits_for_the_refresh_in_flight() -> None:
    """A failover Sentinel makes at once (``SENTINEL FAILOVER``): the promoted replica has
    the lock the refresher's confirmed intent carried. Requests so sparse that the token
    expires between them: the crowd that asks during the refresh has no token to fall
    back on; they wait for the lock and then take the renewed token."""
    plan = replace(SMALL.without_faults(), failover_in_flight=1.0, query_every=900.0,
                   hosts=1, per_host=10, crowd=9, failover_takes=0.0)
    report = simulate_fleet(plan)
    clean(report)
    assert report.waits > 0
    assert report.events["acquired"] > 0


def test_a_crowd_with_nothing_usable_logs_in_while_the_failover_lasts() -> None:
    """The same crowd while no primary answers: no lock to wait for, so each logs in."""
    plan = replace(SMALL.without_faults(), failover_in_flight=1.0, query_every=900.0,
                   hosts=1, per_host=10, crowd=9)
    report = simulate_fleet(plan)
    clean(report)
    assert report.waits == 0
    assert report.events["logged_in"] > 1 and report.faults["unavailable"] > 0
