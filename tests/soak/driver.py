"""``python -m tests.soak [--seconds S] [--seed N]``: the chaos run (``make soak``).

It starts the fleet (:mod:`tests.soak.fleet`), its workers (:mod:`tests.soak.workers`)
and, in this thread, the scheduler (:mod:`tests.soak.chaos`) with the plan the seed
draws (:mod:`tests.soak.plan`). When the time is up it lets every worker finish its call,
asks each host for one more query (after the chaos, everything must work), reads the
server's counters, and prints the verdict (:mod:`tests.soak.verdict`,
:mod:`tests.soak.report`). Exit 0 when every goal was met, 1 when one was missed, 2 when
the soak could not run.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from refserver.harness import ReplaysUncounted
from tests.soak.chaos import Chaos, chattr_works
from tests.soak.fleet import Fleet
from tests.soak.plan import KINDS, make_plan
from tests.soak.report import render, rerun
from tests.soak.verdict import Identity, Verdict, excuse
from tests.soak.workers import LibraryWorker, Recorder, Running, Workers

CHATTR_KINDS = ("store-read-only", "store-immutable", "lock-unusable")
PROGRESS_EVERY = 30.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="how long the workers run (default 600)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the seed of the fault plan (default: a random one, printed)")
    parser.add_argument("--lifetime", type=int, default=None,
                        help="access-token lifetime in seconds (default 30 for runs of "
                             "2 minutes or less, else 60)")
    parser.add_argument("--cli-workers", type=int, default=2,
                        help="looping cidx-auth processes per host (default 2)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads per library worker (default 2)")
    parser.add_argument("--tasks", type=int, default=2,
                        help="asyncio tasks per library worker (default 2)")
    parser.add_argument("--record", default=None, metavar="FILE",
                        help="also write every call and fault window to FILE (JSON)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    lifetime = args.lifetime or (30 if args.seconds <= 120 else 60)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background: children would inherit SIGINT ignored, and the
        # soak's Ctrl-C mid-refresh would do nothing.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # `timeout` (CI) ends the run with SIGTERM: unwind, so the servers stop and the
    # immutable files are made mutable again and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"soak: seed {seed}, {args.seconds:g} s (re-run: {rerun(args.seconds, seed)})",
          flush=True)
    root = Path(tempfile.mkdtemp(prefix="cidx-soak-"))
    try:
        return soak(args, seed, lifetime, root)
    except ReplaysUncounted as lost:
        # The server died unread: a replay may have gone uncounted, so no pass.
        print(f"soak: replays could not be counted ({lost}); seed {seed}", file=sys.stderr)
        return 3
    finally:
        subprocess.run(["chattr", "-R", "-i", str(root)], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def soak(args: argparse.Namespace, seed: int, lifetime: int, root: Path) -> int:
    kinds: tuple[str, ...] = KINDS
    notes: list[str] = []
    why_not = chattr_works(root)
    if why_not is not None:
        kinds = tuple(kind for kind in KINDS if kind not in CHATTR_KINDS)
        notes.append(f"{', '.join(CHATTR_KINDS)} skipped: {why_not}")
    try:
        fleet = Fleet(root / "fleet", lifetime).__enter__()  # closed below
    except (RuntimeError, OSError) as error:
        print(f"soak: the fleet did not start: {error}", file=sys.stderr)
        return 2
    try:
        return run(args, seed, lifetime, root, fleet, kinds, notes)
    finally:
        fleet.close()


def run(args: argparse.Namespace, seed: int, lifetime: int, root: Path, fleet: Fleet,
        kinds: tuple[str, ...], notes: list[str]) -> int:
    say = print
    fleet.server.reset()  # the hosts' own logins do not count
    start = time.time()
    until = start + args.seconds
    plan = make_plan(seed, args.seconds, kinds)
    say(f"soak: {len(fleet.hosts)} hosts ("
        + ", ".join(f"{host.name} as {host.user}" for host in fleet.hosts)
        + f"), token lifetime {lifetime} s, {len(plan)} faults planned", flush=True)
    workers = Workers(Running(), Recorder(), until)
    library = {host.name: LibraryWorker(host, until, root / f"{host.name}.calls",
                                        args.threads, args.tasks) for host in fleet.hosts}
    stop = threading.Event()
    threads = [threading.Thread(target=workers.cli_loop, daemon=True,
                                args=(host, f"cli-{number}", seed * 1000 + index * 10 + number))
               for index, host in enumerate(fleet.hosts) for number in range(args.cli_workers)]
    threads += [threading.Thread(target=worker.supervise, daemon=True)
                for worker in library.values()]
    helpers = [threading.Thread(target=workers.watchdog, args=(stop,), daemon=True),
               threading.Thread(target=progress, args=(workers, start, stop), daemon=True)]
    for thread in (*threads, *helpers):
        thread.start()
    chaos = Chaos(fleet, workers, library, start, lambda line: say(line, flush=True))
    try:
        chaos.run(plan, start + args.seconds - min(30.0, args.seconds / 5), stop)
        while time.time() < until:
            time.sleep(0.5)
        for thread in threads:
            thread.join(timeout=300)
        for host in fleet.hosts:  # after the chaos, every host must work
            workers.run_cli(host, "final", "query", ("query", "recovered", "-l", "1"))
    finally:
        stop.set()
        chaos.undo_all()
    seconds = time.time() - start
    verdict = judge(seed, seconds, lifetime, fleet, chaos, workers, library)
    notes = notes + chaos.notes + server_notes(fleet)
    if args.record:
        write_record(Path(args.record), verdict, start)
    for line in render(verdict, start, args.seconds, notes, chaos.skipped, chaos.unreached):
        say(line)
    return verdict.exit_code


def judge(seed: int, seconds: float, lifetime: int, fleet: Fleet, chaos: Chaos,
          workers: Workers, library: dict[str, LibraryWorker]) -> Verdict:
    """The verdict from the records and the server's counters over all its starts."""
    counts: dict[str, Counter[str]] = {user: Counter(c) for user, c in chaos.banked.items()}
    for user, current in fleet.server.stats()["users"].items():
        counts.setdefault(user, Counter()).update(current)
    identities = [Identity(user, fleet.hosts_of(user), counts.get(user, Counter())["logins"],
                           counts.get(user, Counter())["refreshes"],
                           counts.get(user, Counter())["replays"]) for user in fleet.users]
    calls = list(workers.recorder.calls)
    for worker in library.values():
        calls += worker.read_calls()
    calls.sort(key=lambda call: call.start)
    return Verdict(
        seed=seed, seconds=round(seconds, 1), lifetime=lifetime, calls=calls,
        windows=list(chaos.windows), identities=identities,
        replays=fleet.server.replays_seen(),
        process_rss_kb={f"{name} library worker": worker.rss_kb
                        for name, worker in library.items()},
        tracebacks_elsewhere=[line for worker in library.values()
                              for line in worker.tracebacks],
    )


def write_record(path: Path, verdict: Verdict, start: float) -> None:
    """Every call and window, times relative to the start, for a closer look."""

    def relative(record: Any) -> dict[str, Any]:
        fields = asdict(record)
        fields.update(start=round(fields["start"] - start, 3), end=round(fields["end"] - start, 3))
        return fields

    path.write_text(json.dumps({
        "seed": verdict.seed, "seconds": verdict.seconds, "lifetime": verdict.lifetime,
        "windows": [relative(window) for window in verdict.windows],
        "calls": [{**relative(call), "excuse": excuse(call, verdict.windows)}
                  for call in verdict.calls],
    }, indent=1))


def server_notes(fleet: Fleet) -> list[str]:
    """What the reference server itself reported that the soak should show."""
    output = fleet.server.output()
    return ["the reference server printed a traceback (its own, not the client's)"] \
        if "Traceback" in output else []


def progress(workers: Workers, start: float, stop: threading.Event) -> None:
    """A line every 30 s: how many calls so far, how many failed."""
    while not stop.wait(PROGRESS_EVERY):
        calls: list[Any] = list(workers.recorder.calls)
        failed = sum(not call.ok for call in calls)
        print(f"  +{time.time() - start:6.1f} s  progress: {len(calls)} CLI calls, "
              f"{failed} failed", flush=True)
