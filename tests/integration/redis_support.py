"""A real ``redis-server`` on loopback for the Redis tests, a fleet of hosts, and the
child processes the fleet tests start.

The tests import this module; child processes run it as
``python -m tests.integration.redis_support COMMAND ...`` from the repository root,
so its top-level imports stay light (no pytest). A "host" is a project directory
and a configuration directory of its own; the hosts of one fleet hold the same
per-user secret, as a CI secret would hand it to every runner.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cidx_auth.app.container import Container, build_project, in_redis
from tests.integration.storage_helpers import (
    ALICE,
    SERVER_URL,
    CountingServer,
    GatheringServer,
    release_together,
    session_of,
    wait_for,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.integration.redis_support"
_running: set[RedisServer] = set()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_binary() -> str:
    """``redis-server`` from PATH. Without it the test is skipped, or failed under CI
    unless ``CIDX_SKIP_REDIS`` says that this CI job has no Redis on purpose."""
    import pytest

    found = shutil.which("redis-server")
    if found is not None:
        return found
    reason = "redis-server is not on PATH (run `make redis`, or apt-get install redis-server)"
    if os.environ.get("CIDX_SKIP_REDIS"):  # a CI job with no Redis for its OS (Windows)
        pytest.skip(f"CIDX_SKIP_REDIS is set: {reason}")
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the Redis tests (CIDX_SKIP_REDIS=1 opts out)")
    pytest.skip(reason)


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, without persistence, stopped on exit;
    ``password`` makes it require one (``--requirepass``); ``extra``: more options
    (``--replicaof``)."""

    def __init__(self, binary: str, port: int | None = None, password: str | None = None,
                 extra: Sequence[str] = ()) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.password = password
        self.extra = tuple(extra)
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="cidx-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        argv = [self.binary, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
                "--port", str(self.port), "--daemonize", "no", *self.extra]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> None:
        log = open(Path(self._dir) / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(self.argv(), cwd=self._dir, stdout=log,
                                            stderr=subprocess.STDOUT)
        finally:
            log.close()
        _running.add(self)
        self._await_ping()

    def stop(self) -> None:
        process, self.process = self.process, None
        _running.discard(self)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                           password=self.password)

    def _await_ping(self) -> None:
        import redis

        deadline = time.monotonic() + 10
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5,
                            password=self.password)
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    output = (Path(self._dir) / "redis.log").read_bytes()
                    raise RuntimeError(f"redis-server exited: {output.decode()[-2000:]}")
                with contextlib.suppress(redis.RedisError):
                    if probe.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING within 10 s")
                time.sleep(0.02)
        finally:
            probe.close()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class SentinelServer(RedisServer):
    """A ``redis-server --sentinel`` on 127.0.0.1 watching the primary at ``primary``
    as the service ``service``: it calls the primary down after 2 s without an
    answer (long enough for a loaded machine, short enough for a test); ``quorum``
    sentinels must agree."""

    def __init__(self, binary: str, primary: int, service: str, quorum: int = 2) -> None:
        super().__init__(binary)
        self.primary, self.service, self.quorum = primary, service, quorum

    def argv(self) -> list[str]:
        config = Path(self._dir) / "sentinel.conf"  # Sentinel rewrites its configuration
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self._dir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary} {self.quorum}\n"
            f"sentinel down-after-milliseconds {self.service} 2000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
        )
        return [self.binary, str(config), "--sentinel"]


POLL = 0.05
"""How often to ask the servers whether a role change happened: each asking connects."""


class ReplicatedRedis:
    """A primary, a replica and three Sentinels on 127.0.0.1, as a fleet's Redis is
    usually run: :attr:`url` is the ``redis+sentinel://`` URL of the service."""

    SERVICE = "cidx"

    def __init__(self, binary: str) -> None:
        self.primary = RedisServer(binary)
        self.replica = RedisServer(binary, extra=["--replicaof", "127.0.0.1",
                                                  str(self.primary.port)])
        self.sentinels = [SentinelServer(binary, self.primary.port, self.SERVICE)
                          for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def __enter__(self) -> ReplicatedRedis:
        try:
            self.primary.start()
            self.replica.start()
            wait_until(lambda: replicating(self.primary, self.replica),
                       "the replica's first synchronisation with the primary", 30, POLL)
            for sentinel in self.sentinels:
                sentinel.start()
            wait_until(self._watched, "the Sentinels' seeing the replica and each other", 30,
                       POLL)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for server in (*self.sentinels, self.replica, self.primary):
            server.__exit__()

    def _watched(self) -> bool:
        for sentinel in self.sentinels:
            state = sentinel_state(sentinel, self.SERVICE)
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                return False
        return True

    def primary_port(self) -> int:
        """The primary's port, as the first Sentinel answers."""
        client = self.sentinels[0].client()
        try:
            address = client.execute_command("SENTINEL", "get-master-addr-by-name",
                                             self.SERVICE)
        finally:
            client.close()
        return int(address[1])

    def kill_primary(self) -> None:
        """kill -9 the primary: every write it had not replicated is gone with it."""
        process = self.primary.process
        assert process is not None
        process.kill()
        process.wait()
        self.primary.stop()

    def rejoin(self, node: RedisServer | None = None, timeout: float = 60) -> None:
        """Start a killed node again (by default the primary :meth:`kill_primary` killed)
        as a replica of the other, the primary now; empty, as a node without persistence
        restarts. Returns once it replicates and the set is whole (:meth:`healthy`)."""
        node = node or self.primary
        primary = self.other(node)
        node.extra = ("--replicaof", "127.0.0.1", str(primary.port))
        node.start()
        wait_until(lambda: replicating(primary, node),
                   "the old primary's rejoining as a replica", timeout, POLL)
        wait_until(self.healthy, "the Sentinels' counting the rejoined node", timeout, POLL)

    def await_failover(self) -> None:
        """Until every Sentinel names the replica as the primary, and it acts as one."""
        self.await_primary(self.replica)

    # Roles change with each failover: `primary` and `replica` name the nodes as they
    # started; the methods below work on whichever node holds a role now (the soak's).

    @property
    def nodes(self) -> tuple[RedisServer, RedisServer]:
        """Both data nodes, whatever their roles now."""
        return self.primary, self.replica

    def other(self, node: RedisServer) -> RedisServer:
        """The data node that is not ``node``."""
        return self.replica if node is self.primary else self.primary

    def current_primary(self) -> RedisServer:
        """The node the Sentinels name as the primary now."""
        port = self.primary_port()
        return next(node for node in self.nodes if node.port == port)

    def kill(self, node: RedisServer) -> None:
        """kill -9 ``node``."""
        process = node.process
        assert process is not None
        process.kill()
        process.wait()
        node.stop()

    def await_primary(self, node: RedisServer, timeout: float = 60) -> None:
        """Until every Sentinel names ``node`` as the primary, and it acts as one."""
        port = node.port
        wait_until(lambda: all(int(sentinel_state(sentinel, self.SERVICE)["port"]) == port
                               for sentinel in self.sentinels)
                   and info(node, "role") == "master",
                   "the Sentinels' promotion of the replica", timeout, POLL)

    def restart_replica(self) -> RedisServer:
        """Stop the node that is a replica now and start it again (see :meth:`rejoin`)."""
        replica = self.other(self.current_primary())
        replica.stop()
        self.rejoin(replica)
        return replica

    def healthy(self) -> bool:
        """Whether every Sentinel names the same node the primary, it acts as one, and the
        other node replicates from it and is known to every Sentinel as a healthy replica:
        the state in which a failover can promote it."""
        import redis

        try:
            ports = {int(sentinel_state(sentinel, self.SERVICE)["port"])
                     for sentinel in self.sentinels}
            if len(ports) != 1:
                return False
            primary = next((node for node in self.nodes if node.port in ports), None)
            if primary is None or primary.process is None or info(primary, "role") != "master":
                return False
            replica = self.other(primary)
            if replica.process is None or not replicating(primary, replica):
                return False
            return all(self._knows_replica(sentinel, replica) for sentinel in self.sentinels)
        except (redis.RedisError, KeyError, ValueError):
            return False

    def _knows_replica(self, sentinel: SentinelServer, node: RedisServer) -> bool:
        client = sentinel.client()
        try:
            replicas = client.sentinel_slaves(self.SERVICE)
        finally:
            client.close()
        return any(int(replica["port"]) == node.port and replica["flags"] == "slave"
                   and replica["master-link-status"] == "ok" for replica in replicas)


def info(server: RedisServer, field: str) -> str | None:
    """One field of ``INFO`` from ``server``; None if it does not answer."""
    import redis

    client = server.client()
    try:
        return str(client.info().get(field))
    except redis.RedisError:
        return None
    finally:
        client.close()


def replicating(primary: RedisServer, replica: RedisServer) -> bool:
    """Whether ``replica`` has synchronised with ``primary``, and ``primary`` counts it
    online (``ROLE`` lists it, so writes wait for it)."""
    import redis

    client = primary.client()
    try:
        role = client.execute_command("ROLE")
    except redis.RedisError:
        return False
    finally:
        client.close()
    listed = {int(entry[1]) for entry in role[2]} if role[0] == b"master" else set()
    return replica.port in listed and info(replica, "master_link_status") == "up"


def sentinel_state(sentinel: SentinelServer, service: str) -> dict[str, str]:
    """What ``sentinel`` knows of ``service`` (``SENTINEL MASTER``), as text."""
    client = sentinel.client()
    try:
        reply = client.execute_command("SENTINEL", "MASTER", service)
    finally:
        client.close()
    items = list(reply.items()) if isinstance(reply, dict) else list(
        zip(reply[::2], reply[1::2], strict=True))
    return {text(name): text(value) for name, value in items}


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@atexit.register
def _stop_all() -> None:  # a failed test must not leave a server behind
    for server in list(_running):
        server.stop()


@dataclass(frozen=True)
class Host:
    """One machine of a fleet: its own checkout and its own configuration directory."""

    project: Path
    config: Path


def make_fleet(root: Path, count: int) -> list[Host]:
    """``count`` hosts holding one shared per-user secret, as a CI secret would give."""
    shared = secrets.token_bytes(32)
    hosts = []
    for number in range(count):
        host = Host(root / f"host-{number}" / "checkout", root / f"host-{number}" / "config")
        host.project.mkdir(parents=True)
        host.config.mkdir(mode=0o700)
        secret = host.config / "user.secret"
        secret.write_bytes(shared)
        secret.chmod(0o600)
        hosts.append(host)
    return hosts


def fleet_container(store_url: str, host: Host, server: Any, lease: float = 30.0) -> Container:
    """The container a cidx process on ``host`` builds for the shared identity."""
    return build_project(host.project, SERVER_URL, server, config_dir=host.config,
                         shared=in_redis(store_url, ALICE.username, lease=lease))


def timed_lock(container: Container) -> list[float]:
    """Record how long each ``lock()`` of the container's token store waited."""
    store = container.token_store()
    original = store.lock
    waits: list[float] = []

    @contextlib.contextmanager
    def lock(timeout: float) -> Iterator[None]:
        started = time.perf_counter()
        with original(timeout):
            waits.append(time.perf_counter() - started)
            yield

    store.lock = lock
    return waits


def start_children(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", MODULE, *command], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_together(commands: list[list[str]], ready_dir: Path, go: Path) -> list[dict[str, Any]]:
    """Start one child per command, wait until all are ready, release them at once, and
    return what each printed (JSON). Raises with a child's stderr if one fails."""
    ready_dir.mkdir()
    children = [start_children(command) for command in commands]
    results = release_together(children, ready_dir, go, timeout=90)
    for code, _, err in results:
        if code != 0:
            raise RuntimeError(f"a child exited with {code}: {err}")
    return [json.loads(out) for _, out, _ in results]


class StuckServer(CountingServer):
    """A server whose refresh never answers: touches ``entered``, then waits forever.

    The refresh is held before the shared state is touched, so the refresh token the
    stuck process carried stays unused, as when a request dies on the way out.
    """

    def __init__(self, state_path: Path, entered: Path) -> None:
        super().__init__(state_path)
        self.entered = entered

    def refresh(self, refresh_token: str) -> Any:
        self.entered.touch()
        wait_for(self.entered.with_name("never"), timeout=3600)
        return super().refresh(refresh_token)


# ---- child processes -------------------------------------------------------------


def race(store_url: str, project: str, config: str, state: str, lease: str,
         ready_dir: str, go: str, asking: str = "", count: str = "0") -> None:
    """Get ready, wait for go, get a token; print it with timings and lock waits. With
    ``asking``, say so there first, from a server that waits for ``count`` such processes
    (see :class:`GatheringServer`)."""
    host = Host(Path(project), Path(config))
    auth = GatheringServer(Path(state), Path(asking), int(count)) if asking else \
        CountingServer(Path(state))
    container = fleet_container(store_url, host, auth, float(lease))
    waits = timed_lock(container)
    provider = container.token_provider()
    container.token_store()._cipher.encrypt(b"warm-up")  # derive the key before the race
    (Path(ready_dir) / str(os.getpid())).touch()
    wait_for(Path(go))
    started = time.time()
    if asking:
        (Path(asking) / str(os.getpid())).touch()
    token = provider.get_token()
    report = {"token": token, "started": started, "done": time.time(), "waits": waits}
    print(json.dumps(report), flush=True)


def stuck(store_url: str, project: str, config: str, state: str, lease: str,
          entered: str) -> None:
    """Take the lock and hang inside the refresh until killed."""
    host = Host(Path(project), Path(config))
    server = StuckServer(Path(state), Path(entered))
    fleet_container(store_url, host, server, float(lease)).token_provider().get_token()


COMMANDS: dict[str, Callable[..., None]] = {"race": race, "stuck": stuck}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])


def seed_fleet(root: Path, url: str, hosts: int) -> tuple[list[Host], CountingServer]:
    """Hosts with stored credentials, and an expired shared token in Redis."""
    fleet = make_fleet(root, hosts)
    auth = CountingServer(root / "auth.json")
    for host in fleet:
        fleet_container(url, host, auth).credential_store().save(ALICE)
    expired = session_of(auth.seed(ALICE.username, issued_at=time.time() - 3600))
    first = fleet_container(url, fleet[0], auth).token_store()
    with first.lock(5):
        first.save(expired)
    return fleet, auth
