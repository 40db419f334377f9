"""`RunningServer`: the reference server as a child process, for tests.

A child process (not a thread) because tests need what only a process
gives: a real socket, a kill that looks like a crash, and a restart on the
same port. The child is told to exit when its stdin closes, so even a test
run killed outright leaves no server behind; `close()` and an `atexit`
hook cover the ordinary paths.

Each start draws a new admin token, which the child writes to a 0600 file in
a private directory of the harness; the admin helpers send it, so tests call
`stats()`, `revoke()` and the rest without knowing it exists.

`replays_seen()` counts the refresh-token replays the server saw over every start of
the harness: `stop()` and `kill()` read the count before the process (and its counters)
goes, so the test suite can fail a test that caused a replay it did not declare even
when the server was closed or restarted inside that test.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from refserver.admin_routes import ADMIN_TOKEN_HEADER
from refserver.cli import DEFAULT_USERS, config_to_argv
from refserver.config import ServerConfig
from refserver.tls import client_context, ensure_tls_material

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_READY_PREFIX = "serving on "
_TOKEN_FILE = "admin-token"
_live: weakref.WeakSet[RunningServer] = weakref.WeakSet()


class ReplaysUncounted(RuntimeError):
    """A start of the server ended without its replay count read (it died on its own,
    or did not answer `/_admin/stats` before it was stopped)."""


class RunningServer:
    """Start, stop, restart and steer a reference server in a child process.

    Use as a context manager; `url` is the base URL, `ca_file` the CA bundle
    to trust when serving TLS (None otherwise).
    """

    def __init__(self, config: ServerConfig | None = None, tls_dir: Path | None = None, *,
                 tls: bool = False, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout: float = 60.0) -> None:
        self.config = config or ServerConfig(users=dict(DEFAULT_USERS))
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.url = ""
        self._own_tls_dir = tls and tls_dir is None
        if self._own_tls_dir:
            tls_dir = Path(tempfile.mkdtemp(prefix="refserver-tls-"))
        self.tls_dir = tls_dir
        self.ca_file = ensure_tls_material(self.tls_dir).ca_file if self.tls_dir else None
        self._process: subprocess.Popen[str] | None = None
        self._output: deque[str] = deque(maxlen=200)
        self._pump_thread: threading.Thread | None = None
        self._admin_dir: Path | None = None
        self._admin_token = ""
        self._replays_banked = 0
        self._uncounted: str | None = None
        _live.add(self)

    # Lifecycle -------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self.running and self._process else None

    def start(self) -> None:
        """Start the child (on the port used before, after a stop) and wait for /health."""
        if self.running:
            raise RuntimeError("the reference server is already running")
        self._settle_exited()
        deadline = time.monotonic() + self.startup_timeout
        if self._admin_dir is None:
            self._admin_dir = Path(tempfile.mkdtemp(prefix="refserver-admin-"))
        # The child makes its token file anew (O_EXCL): one left by a killed child goes.
        (self._admin_dir / _TOKEN_FILE).unlink(missing_ok=True)
        self._admin_token = ""
        announced: queue.Queue[str] = queue.Queue()
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=self._environment())
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self._process, announced), name="refserver-output",
            daemon=True)
        self._pump_thread.start()
        try:
            self.url = self._await_announcement(announced, deadline)
            # Written before the announcement, so it is there now.
            self._admin_token = (self._admin_dir / _TOKEN_FILE).read_text().strip()
            self.port = int(self.url.rsplit(":", 1)[1])
            self._await_health(deadline)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the child to shut down gracefully; kill it if it will not."""
        process = self._process
        if process is None:
            return
        self._bank_replays(process)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._release(process)

    def kill(self) -> None:
        """Kill the child at once, as a crash would."""
        process = self._process
        if process is None:
            return
        self._bank_replays(process)
        if process.poll() is None:
            process.kill()
            process.wait()
        self._release(process)

    def close(self) -> None:
        """Stop the child and remove any TLS directory this harness made."""
        self.stop()
        if self._own_tls_dir and self.tls_dir is not None:
            shutil.rmtree(self.tls_dir, ignore_errors=True)
            self._own_tls_dir = False
        if self._admin_dir is not None:
            shutil.rmtree(self._admin_dir, ignore_errors=True)
            self._admin_dir = None

    def output(self) -> str:
        """The child's recent output (stdout and stderr), for failure messages."""
        return "".join(self._output)

    # Admin controls --------------------------------------------------------

    @property
    def admin_token(self) -> str:
        """The token this start of the server wants on `/_admin` ("" before a start)."""
        return self._admin_token

    def admin_headers(self) -> dict[str, str]:
        """The header that carries the admin token, for a hand-made admin request."""
        return {ADMIN_TOKEN_HEADER: self._admin_token}

    def stats(self) -> dict[str, Any]:
        """`GET /_admin/stats`."""
        return dict(self._admin("GET", "/_admin/stats"))

    def replays_seen(self) -> int:
        """The refresh-token replays the server has seen over all its starts (a
        `reset()` does not zero them); `ReplaysUncounted`, once, when a start ended
        without its count read."""
        self._settle_exited()
        if self._uncounted is not None:
            # Reported once, to whoever reads next; later reads count on from the bank.
            lost, self._uncounted = self._uncounted, None
            raise ReplaysUncounted(lost)
        live = int(self.stats()["replays_since_start"]) if self.running else 0
        return self._replays_banked + live

    def last_query(self) -> Any:
        """The body of the last `POST /api/query` as the server received it (None before)."""
        return self._admin("GET", "/_admin/last-query")["body"]

    def inject(self, kind: str, count: int = 1, **options: Any) -> dict[str, Any]:
        """Arm a fault: `kind` is error, rate_limit, hang, drop or hold; see
        `refserver.faults`. Options: status, retry_after, seconds, paths."""
        body = {"kind": kind, "count": count, **options}
        return dict(self._admin("POST", "/_admin/faults", body))

    def hold(self, path: str = "/api/auth/refresh", count: int = 1,
             seconds: float = 60.0) -> None:
        """Process the next `count` requests to `path`, then withhold each answer for
        `seconds` or until its client leaves (a refresh is spent, its answer lost)."""
        self.inject("hold", count, seconds=seconds, paths=[path])

    def wait_for(self, counter: str, at_least: int = 1, timeout: float = 10.0) -> int:
        """Block until the total `counter` reaches `at_least`; its value.

        Raises TimeoutError when it does not within `timeout` seconds.
        """
        body = self._admin("POST", "/_admin/wait",
                           {"counter": counter, "at_least": at_least, "timeout": timeout},
                           timeout=timeout + 10.0)
        if not body["reached"]:
            raise TimeoutError(f"{counter} stayed at {body['value']} (< {at_least}) "
                               f"for {timeout:g} s")
        return int(body["value"])

    def wait_held(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until `count` held requests have been processed (their answers held)."""
        self.wait_for("held", count, timeout)

    def release_held(self) -> int:
        """Send every answer held now (see :meth:`hold`); how many there were."""
        return int(self._admin("POST", "/_admin/release")["released"])

    def clear_faults(self) -> None:
        """`DELETE /_admin/faults`."""
        self._admin("DELETE", "/_admin/faults")

    def revoke(self, username: str) -> int:
        """Revoke all of a user's refresh families; returns how many."""
        body = self._admin("POST", "/_admin/revoke", {"username": username})
        return int(body["revoked_families"])

    def reset(self) -> None:
        """Zero counters and forget limiters, lockouts and faults."""
        self._admin("POST", "/_admin/reset")

    def set_clock_offset(self, seconds: float) -> None:
        """Shift the server's clock `seconds` away from real time."""
        self._admin("POST", "/_admin/clock", {"offset": seconds})

    def set_token_lifetime(self, seconds: int) -> None:
        """Issue access tokens with this lifetime from now on."""
        self._admin("POST", "/_admin/token-lifetime", {"seconds": seconds})

    def verify(self) -> Any:
        """What to pass as httpx's `verify=` to trust this server."""
        return client_context(self.ca_file) if self.ca_file else True

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client aimed at this server, trusting its CA."""
        options.setdefault("verify", self.verify())
        options.setdefault("trust_env", False)
        return httpx.Client(base_url=self.url, **options)

    # Internals -------------------------------------------------------------

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None,
               timeout: float = 10.0) -> Any:
        with self.client(timeout=timeout, headers=self.admin_headers()) as http:
            response = http.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def _settle_exited(self) -> None:
        """A child that exited on its own took its count with it: say so (once), and let
        go of it, before anything reads or replaces it."""
        process = self._process
        if process is not None and process.poll() is not None:
            self._bank_replays(process)
            self._release(process)

    def _bank_replays(self, process: subprocess.Popen[str]) -> None:
        # Read before the process goes: its counters go with it.
        if not self._admin_token:
            return  # never announced itself, so it served nothing
        if process.poll() is not None:
            self._uncounted = f"the reference server at {self.url} exited on its own"
            return
        try:
            self._replays_banked += int(self.stats()["replays_since_start"])
        except (httpx.HTTPError, KeyError, ValueError) as error:
            self._uncounted = (f"the reference server at {self.url} did not give its replay "
                               f"count before it was stopped ({type(error).__name__})")

    def _command(self) -> list[str]:
        assert self._admin_dir is not None
        command = [sys.executable, "-m", "refserver", *config_to_argv(self.config),
                   "--host", self.host, "--port", str(self.port), "--stop-on-stdin-eof",
                   "--admin-token-file", str(self._admin_dir / _TOKEN_FILE)]
        if self.tls_dir is not None:
            command += ["--tls", str(self.tls_dir)]
        return command

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The child must import this very copy of the package, wherever the cwd is.
        paths = [str(_PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _pump(self, process: subprocess.Popen[str], announced: queue.Queue[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._output.append(line)
            if line.startswith(_READY_PREFIX):
                announced.put(line[len(_READY_PREFIX):].strip())

    def _await_announcement(self, announced: queue.Queue[str], deadline: float) -> str:
        while time.monotonic() < deadline:
            try:
                return announced.get(timeout=0.05)
            except queue.Empty:
                if self._process is None or self._process.poll() is not None:
                    raise RuntimeError(f"reference server exited:\n{self.output()}") from None
        raise TimeoutError(f"reference server did not announce itself:\n{self.output()}")

    def _await_health(self, deadline: float) -> None:
        with self.client(timeout=2.0) as http:
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"/health never answered:\n{self.output()}")
                time.sleep(0.05)

    def _release(self, process: subprocess.Popen[str]) -> None:
        # The child is gone, so its output pipe is at EOF: let the pump finish
        # reading before the pipe is closed under it.
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=2.0)
            self._pump_thread = None
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        self._process = None


@atexit.register
def _stop_leftovers() -> None:
    # Last resort for harnesses never closed: no child and no temp directory may outlive us.
    for server in list(_live):
        server.kill()
        server.close()
