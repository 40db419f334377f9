"""``cidx-auth demo``: the main job, end to end, against an embedded reference server.

It starts the reference server on a free loopback port with tokens that live a few
seconds, logs in through the CLI, then for about a minute runs several ``cidx-auth
query`` processes side by side with async tasks in this process, all sharing one
token file. On the way the server revokes the user's refresh tokens once and answers
a burst of errors (:data:`FAULTS`). The run passes only if no query failed and the server
saw no refresh-token replay.

Without a terminal (``make demo`` in CI, ``| cat``) a line of progress is printed at every
5 s mark (:func:`marks_due` decides which, from the clock alone), and the summary says
which faults were injected and what the client did about each.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cidx_auth.domain.errors import TransportError

USER, PASSWORD = "demo", "demo-password-1"
TOKEN_LIFETIME = 4
REPO = "backend"
ADMIN_HEADER = "X-Admin-Token"
"""What the reference server's `/_admin` wants its token in (written out again: the
client never imports the server)."""
PROGRESS_EVERY = 5
"""Seconds between two lines of progress when stdout is not a terminal."""
MAX_SERVER_LINE = 300
"""How much of the server's last stderr line a failed start shows."""
BURST = 2
"""How many 503 answers the burst of errors holds."""


@dataclass(frozen=True)
class Fault:
    """One fault the demo injects, in words: what it is, and what the client should do."""

    name: str
    injected: str
    answer: str


FAULTS = (
    Fault("revoked", "the user's refresh tokens were revoked (as a password change does)",
          "the server refused {refused} with a revoked token, and the client logged in "
          "again with the stored password ({relogins})"),
    Fault("errors", f"a burst of {BURST} 503 answers to /api/query (a server in trouble)",
          "the server sent {fired}, and the client sent those queries again after a short, "
          "jittered wait"),
)
"""The injected faults, in the order they happen: at 1/3 and at 2/3 of the run."""


def marks_due(start: float, now: float, shown: int, every: int = PROGRESS_EVERY) -> list[int]:
    """The marks of progress (every ``every`` seconds after ``start``) reached by ``now``
    and later than ``shown``, the last one reported (0 before the first). The demo prints
    one line for the latest (a loop turn that overran a mark still reports it; one that
    overran two reports the later, once). A pure function: tests give it the times."""
    reached = int((now - start) // every) * every
    return list(range(shown + every, reached + 1, every))


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    process_runs: int = 0
    notes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, success: bool, note: str = "") -> None:
        with self.lock:
            if success:
                self.ok += 1
            else:
                self.failed += 1
                if note and len(self.notes) < 5:
                    self.notes.append(note)


class Server:
    """The reference server as a child process (the client never imports it)."""

    def __init__(self, workdir: Path) -> None:
        token_file = workdir / "admin-token"  # the server makes it 0600, in our private dir
        # Its stderr goes to a file in our private directory (a pipe nobody reads could
        # fill up and stop it): a start that fails is explained by its last line.
        self.log = workdir / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our module
                server_argv(token_file), cwd=workdir, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, text=True,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        self.process.stdout.close()
        if not line.startswith("serving on "):
            self.stop()
            raise TransportError(f"the demo's reference server did not start: "
                                 f"{last_line(self.log) or 'it said nothing'}")
        self.url = line.removeprefix("serving on ")
        # Written before the announcement; /_admin answers its owner only.
        token = token_file.read_text().strip()
        self.admin = httpx.Client(base_url=self.url, trust_env=False, timeout=10,
                                  headers={ADMIN_HEADER: token})

    def revoke(self) -> int:
        """Revoke every refresh-token family of the demo's user; how many there were."""
        answer = self.admin.post("/_admin/revoke", json={"username": USER})
        answer.raise_for_status()
        revoked: int = answer.json().get("revoked_families", 0)
        return revoked

    def stats(self) -> dict[str, Any]:
        totals: dict[str, Any] = self.admin.get("/_admin/stats").json()["totals"]
        return totals

    def post(self, path: str, body: dict[str, Any]) -> None:
        self.admin.post(path, json=body).raise_for_status()

    def stop(self) -> None:
        if hasattr(self, "admin"):
            self.admin.close()
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def server_argv(token_file: Path) -> list[str]:
    """How the demo starts the reference server (a test swaps in one that fails)."""
    return [sys.executable, "-m", "refserver", "--port", "0", "--user", f"{USER}:{PASSWORD}",
            "--token-lifetime", str(TOKEN_LIFETIME), "--login-delay", "0.3",
            "--admin-token-file", str(token_file),
            "--stop-on-stdin-eof"]  # the server dies with us, whatever happens


def last_line(log: Path, limit: int = MAX_SERVER_LINE) -> str:
    """The last non-empty line of ``log`` (its final 4 KiB read), at most ``limit``
    characters, without the characters a terminal acts on."""
    from cidx_auth.app.render import printable

    try:
        with log.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
            tail = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    shown = printable(lines[-1]).strip() if lines else ""
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _cli(
    project: Path, env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our interpreter, our module
        [sys.executable, "-m", "cidx_auth", "--project", str(project), *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def _process_worker(
    project: Path, env: dict[str, str], tally: Tally, stop: threading.Event
) -> None:
    while not stop.is_set():
        done = _cli(project, env, "query", "token refresh", "--repo", REPO, "--json")
        tally.add(done.returncode == 0, done.stderr.strip()[-200:])
        with tally.lock:
            tally.process_runs += 1


async def _task_workload(project: Path, tally: Tally, stop: threading.Event, tasks: int) -> None:
    from cidx_auth.app.project import open_project_at

    opened = open_project_at(project)
    try:
        client = opened.async_client()
        async with client:
            async def one() -> None:
                while not stop.is_set():
                    try:
                        await client.query("retry with backoff", REPO, limit=3)
                        tally.add(True)
                    except Exception as error:  # a failed query is counted, not hidden
                        tally.add(False, f"{type(error).__name__}: {error}")
                    await asyncio.sleep(0.05)

            await asyncio.gather(*(one() for _ in range(tasks)))
    finally:
        opened.close()


def _injected(events: dict[str, float]) -> str:
    """The faults injected so far, in words: "refresh tokens revoked at 4 s; ..."."""
    said = {"revoked": "refresh tokens revoked", "errors": f"a burst of {BURST} 503s"}
    return "; ".join(f"{said[name]} at {at:.0f} s" for name, at in events.items())


def progress_line(mark: int, tally: Tally, stats: dict[str, Any],
                  events: dict[str, float]) -> str:
    """One line of progress, for a reader of a log."""
    return (f"{mark:4d} s: {tally.ok} queries ok, {tally.failed} failed; the server saw "
            f"{_plural(stats.get('logins', 0), 'login')}, "
            f"{_plural(stats.get('refreshes', 0), 'refresh', 'refreshes')}, "
            f"{_plural(stats.get('replays', 0), 'replay')}; "
            f"faults so far: {_injected(events) or 'none'}")


def _plural(count: int, one: str, many: str = "") -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _view(
    elapsed: float, total: float, tally: Tally, stats: dict[str, Any], events: dict[str, float]
) -> Table:
    table = Table(title=f"cidx-auth demo: {elapsed:4.0f} s of {total:.0f} s")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("queries ok", str(tally.ok))
    table.add_row("queries failed", str(tally.failed))
    for key in ("logins", "refreshes", "replays", "failed_logins"):
        table.add_row(f"server {key.replace('_', ' ')}", str(stats.get(key, 0)))
    shown = {"revoked": "tokens revoked", "errors": f"{BURST} 503s"}  # fits in 80 columns
    table.add_row("faults injected",
                  ", ".join(f"{shown[name]} ({at:.0f} s)" for name, at in events.items()) or "-")
    return table


def run_demo(seconds: float = 60.0, processes: int = 4, tasks: int = 8) -> int:
    """Run the demo; returns the exit code (0 only if nothing failed)."""
    console = Console(soft_wrap=True)  # progress lines stay whole in CI logs
    with tempfile.TemporaryDirectory(prefix="cidx-demo-") as tmp:
        workdir = Path(tmp)
        project, config = workdir / "project", workdir / "config"
        project.mkdir()
        env = {**os.environ, "CIDX_CONFIG_DIR": str(config)}
        os.environ["CIDX_CONFIG_DIR"] = str(config)
        server = Server(workdir)
        try:
            return _run(console, server, project, env, seconds, processes, tasks)
        finally:
            server.stop()


def _run(console: Console, server: Server, project: Path, env: dict[str, str],
         seconds: float, processes: int, tasks: int) -> int:
    console.print(f"reference server on {server.url}; tokens live {TOKEN_LIFETIME:g} s")
    done = _cli(project, env, "login", "--server", server.url, "--username", USER,
                "--password-stdin", stdin=PASSWORD + "\n")
    if done.returncode != 0:
        console.print(f"[red]login failed[/red]: {done.stderr.strip()}")
        return 1
    console.print(done.stdout.strip())
    tally, stop, events = Tally(), threading.Event(), dict[str, float]()
    # Daemon threads, stopped in `finally`: Ctrl-C or an error must end the demo too.
    workers = [threading.Thread(target=_process_worker, args=(project, env, tally, stop),
                                daemon=True) for _ in range(processes)]
    workers.append(threading.Thread(
        target=asyncio.run, args=(_task_workload(project, tally, stop, tasks),), daemon=True))
    start = time.monotonic()
    for worker in workers:
        worker.start()
    try:
        _drive(console, server, tally, events, start, seconds)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=130)  # a worker's CLI call times out after 120 s at most
    stats = server.stats()  # after the last query: the figures and the tally agree
    console.print(_view(seconds, seconds, tally, stats, events))
    return _summary(console, project, env, tally, stats, events)


def _drive(console: Console, server: Server, tally: Tally, events: dict[str, float],
           start: float, seconds: float) -> None:
    """Show progress, revoke once and inject one burst of errors on the way."""
    shown = 0
    with Live(console=console, refresh_per_second=4, transient=True) as live:
        while (elapsed := time.monotonic() - start) < seconds:
            if elapsed > seconds / 3 and "revoked" not in events:
                server.revoke()
                events["revoked"] = elapsed
            if elapsed > 2 * seconds / 3 and "errors" not in events:
                server.post("/_admin/faults", {"kind": "error", "status": 503, "count": BURST,
                                               "paths": ["/api/query"]})
                events["errors"] = elapsed
            stats = server.stats()
            live.update(_view(elapsed, seconds, tally, stats, events))
            due = marks_due(start, time.monotonic(), shown)
            if due and not console.is_terminal:
                shown = due[-1]
                console.print(progress_line(shown, tally, stats, events), markup=False)
            time.sleep(0.25)


def _summary(console: Console, project: Path, env: dict[str, str], tally: Tally,
             stats: dict[str, Any], events: dict[str, float]) -> int:
    token_file = project / ".code-indexer" / ".token"
    data = token_file.read_bytes()
    mode = stat.S_IMODE(token_file.stat().st_mode)
    current = _cli(project, env, "token").stdout.strip()
    plaintext = b"eyJ" in data or (current and current.encode() in data)
    status = _cli(project, env, "status", "--json").stdout
    console.print(f"queries ok: {tally.ok}, failed: {tally.failed} (goal 0); "
                  f"{tally.process_runs} of them by separate `cidx-auth query` processes")
    console.print(f"server: {stats.get('logins', 0)} logins, {stats.get('refreshes', 0)} "
                  f"refreshes, {stats.get('replays', 0)} replay detections (goal 0)")
    counters = _counters(status)
    for line in explain(events, stats, counters, tally.failed):
        console.print(line, markup=False)
    shown = "yes" if plaintext else "no"
    console.print(f".token mode {mode:04o}, plaintext token in file: {shown}")
    for note in tally.notes:
        console.print(f"[red]failure[/red]: {note}")
    ok = (tally.failed == 0 and tally.ok > 0 and stats.get("replays", 0) == 0
          and mode == 0o600 and not plaintext)
    console.print("[green]demo passed[/green]" if ok else "[red]demo failed[/red]")
    return 0 if ok else 1


def _counters(status_json: str) -> dict[str, int]:
    import json

    try:
        counters: dict[str, int] = json.loads(status_json).get("counters", {})
    except (ValueError, AttributeError):
        return {}
    return counters


def explain(events: dict[str, float], stats: dict[str, Any], counters: dict[str, int],
            failed: int) -> list[str]:
    """The summary's account of the faults: which were injected, what the client did
    about each, and why its count of failures stands beside no failed query."""
    said = ["faults injected, and what the client did:"]
    figures = {
        "refused": _plural(stats.get("failed_refreshes", 0), "refresh", "refreshes"),
        "relogins": _plural(counters.get("relogins", 0), "login"),
        "fired": _plural(stats.get("faults_fired", 0), "503"),
    }
    for fault in FAULTS:
        if fault.name in events:
            said.append(f"  at {events[fault.name]:.0f} s, {fault.injected}: "
                        f"{fault.answer.format(**figures)}")
        else:
            said.append(f"  {fault.injected}: not reached (the run was too short)")
    shown = ", ".join(f"{name} {count}" for name, count in sorted(counters.items()))
    said.append(f"client counters: {shown or 'unavailable'}")
    if counters.get("failures", 0) and not failed:
        said.append("  failures counts refreshes and logins the server refused or could not "
                    "answer (here, the refreshes the revocation refused); each was followed by a "
                    "login with the stored password, so no query failed: that is the "
                    "recovery the demo shows, not an error")
    return said
