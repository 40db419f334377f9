"""The soak's report: the verdict as lines of text (no secrets: a call's last stderr
line is cidx-auth's own message, which never holds a token or a password)."""

from __future__ import annotations

from collections import Counter

from tests.soak.verdict import Call, Verdict

RENEWALS = (1.1, 2.0)
"""Auth calls per token lifetime that continuous use costs: a token is renewed once it is
past half its life (the refresh window is half the lifetime for tokens under 10 minutes,
`domain/expiry.py`), at the latest when only the skew margin (a tenth) is left."""


def rerun(seconds: float, seed: int) -> str:
    """The command that runs the same plan again."""
    return f"make soak SOAK_SECONDS={seconds:g} SOAK_SEED={seed}"


def _at(call: Call, start: float) -> str:
    return f"+{call.start - start:.1f} s"


def render(verdict: Verdict, start: float, asked: float, notes: list[str],
           skipped: Counter[str], unreached: Counter[str] | None = None) -> list[str]:
    """The report of a run of ``asked`` seconds that started at ``start`` (wall clock)."""
    lines = [f"soak: seed {verdict.seed}, {verdict.seconds:g} s, token lifetime "
             f"{verdict.lifetime:g} s"]
    faults = verdict.faults
    lines.append(f"faults injected: {sum(faults.values())}")
    for kind, count in sorted(faults.items()):
        extra = f" (and {skipped[kind]} skipped)" if skipped.get(kind) else ""
        lines.append(f"  {kind:<20} {count}{extra}")
    for kind in sorted(set(skipped) - set(faults)):
        lines.append(f"  {kind:<20} 0 (and {skipped[kind]} skipped)")
    if unreached:
        lines.append("planned but not reached before the quiet tail: " + ", ".join(
            f"{kind} {count}" for kind, count in sorted(unreached.items())))
    queries = verdict.queries
    failed = [call for call in verdict.calls if not call.ok]
    cli = sum(1 for call in verdict.calls if not call.worker.startswith("lib"))
    lines.append(f"calls: {len(verdict.calls)} ({cli} cidx-auth processes, "
                 f"{len(verdict.calls) - cli} library calls), {len(queries)} queries, "
                 f"{sum(call.ok for call in queries)} of them answered; {len(failed)} failed")
    lines.append(f"replays: {verdict.replays} (goal 0)")
    unexcused = verdict.unexcused
    lines.append(f"failed while a valid path existed: {len(unexcused)} (goal 0)")
    for call in unexcused[:40]:
        lines.append(f"  {call.host} {call.worker} {call.kind} at {_at(call, start)}, "
                     f"{call.seconds:.1f} s, exit {call.code}: {call.last_line or call.error}")
    if len(unexcused) > 40:
        lines.append(f"  ... and {len(unexcused) - 40} more")
    reasons = Counter(why for _, why in verdict.failures if why is not None)
    lines.append(f"failures with a cause outside the client: {sum(reasons.values())}")
    for why, count in reasons.most_common():
        lines.append(f"  {count:>5}  {why}")
    lines.append("auth calls (logins + refreshes, the soak's own logins not counted) per "
                 f"token lifetime, per identity (goal close to 1; continuous use costs "
                 f"{RENEWALS[0]:g} to {RENEWALS[1]:g}, as the client renews between half-life "
                 "and the skew margin):")
    for identity in verdict.identities:
        rate = identity.auth_calls_per_lifetime(verdict.seconds, verdict.lifetime)
        lines.append(f"  {identity.user:<6} ({len(identity.hosts)} host"
                     f"{'' if len(identity.hosts) == 1 else 's'}): {identity.logins} logins + "
                     f"{identity.refreshes} refreshes in {verdict.seconds:g} s = {rate:.2f} "
                     "per lifetime")
    slowest = verdict.slowest_query()
    if slowest is not None:
        lines.append(f"slowest query: {slowest.seconds:.1f} s ({slowest.host} {slowest.worker} "
                     f"at {_at(slowest, start)})")
    what, rss = verdict.largest_process()
    lines.append(f"largest process: {rss / 1024:.1f} MiB peak RSS ({what})")
    tracebacks = verdict.tracebacks
    lines.append(f"tracebacks: {len(tracebacks)} (goal 0)")
    lines.extend(f"  {where}" for where in verdict.tracebacks_elsewhere[:20])
    crashed = [call for call in verdict.calls if call.traceback]
    lines.extend(f"  {call.host} {call.worker} {call.kind} at {_at(call, start)}: "
                 f"{call.last_line}" for call in crashed[:20])
    early = [call for call in verdict.calls if call.startup_interrupt]
    if early:
        lines.append(f"Ctrl-C before cidx-auth's code ran: {len(early)} (Python's own "
                     "KeyboardInterrupt traceback while it started or imported the entry "
                     "point; nothing was sent or written; not counted above)")
    lines.extend(f"note: {note}" for note in notes)
    missed = verdict.missed()
    lines.append("verdict: " + ("every goal met" if not missed else "FAILED: " + "; ".join(missed)))
    lines.append(f"seed {verdict.seed}: re-run with `{rerun(asked, verdict.seed)}` "
                 "(the same fault plan; process timings differ)")
    return lines
