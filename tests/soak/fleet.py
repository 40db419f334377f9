"""The soak's world: the reference server, a replicated Redis, and the simulated hosts.

Hosts ``redis-0`` .. ``redis-N`` share one identity (alice) through Redis behind Sentinel,
as a CI fleet shares a service account: each is a project directory and a configuration
directory of its own, holding the same per-user secret (``make_fleet``). Hosts
``file-bob``, ``file-carol`` ... keep their session in their own ``.code-indexer`` files,
each as a user of its own, so the server's counters are per identity. Every host logs in
once through the CLI (``login --password-stdin``); the passwords are random per run and
never printed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.integration.redis_support import ReplicatedRedis, make_fleet

SHARED_USER = "alice"
FILE_USERS = ("bob", "carol")


def cli_command() -> list[str]:
    """How to run ``cidx-auth``: the console script beside this interpreter, as users run
    it, else the module."""
    script = Path(sys.executable).with_name("cidx-auth")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cidx_auth"]


@dataclass(frozen=True)
class SoakHost:
    """One simulated machine: a project, a configuration directory, whom it logs in as,
    and its store (a ``redis+sentinel://`` URL, or None for the project's files)."""

    name: str
    user: str
    project: Path
    config: Path
    store_url: str | None = None

    @property
    def store_dir(self) -> Path:
        """The project's ``.code-indexer``."""
        return self.project / ".code-indexer"

    def env(self) -> dict[str, str]:
        """The environment of a command on this host: no ``CIDX_*`` from outside."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("CIDX_")}
        env["CIDX_CONFIG_DIR"] = str(self.config)
        return env

    def argv(self, *args: str) -> list[str]:
        """``cidx-auth --project PROJECT ARGS``."""
        return [*cli_command(), "--project", str(self.project), *args]


class Fleet:
    """Starts and stops everything a soak needs; ``hosts`` once entered."""

    def __init__(self, root: Path, lifetime: int, redis_hosts: int = 3,
                 file_users: tuple[str, ...] = FILE_USERS) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (run `make redis`)")
        self.root = root
        self.passwords = {user: secrets.token_urlsafe(18)
                          for user in (SHARED_USER, *file_users)}
        self.redis = ReplicatedRedis(binary)
        self.server = RunningServer(ServerConfig(users=dict(self.passwords),
                                                 token_lifetime=lifetime))
        self._redis_hosts = redis_hosts
        self._file_users = file_users
        self.hosts: list[SoakHost] = []

    def __enter__(self) -> Fleet:
        self.redis.__enter__()
        try:
            self.server.start()
            self.hosts = self._make_hosts()
            for host in self.hosts:
                self._login(host)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and Redis (the caller removes ``root``)."""
        self.server.close()
        self.redis.__exit__()

    def hosts_of(self, user: str) -> tuple[str, ...]:
        """The names of the hosts logged in as ``user``."""
        return tuple(host.name for host in self.hosts if host.user == user)

    @property
    def users(self) -> tuple[str, ...]:
        """Every identity, in order."""
        return tuple(self.passwords)

    def _make_hosts(self) -> list[SoakHost]:
        hosts = [SoakHost(f"redis-{number}", SHARED_USER, machine.project, machine.config,
                          self.redis.url)
                 for number, machine in enumerate(make_fleet(self.root / "redis",
                                                             self._redis_hosts))]
        for user in self._file_users:
            home = self.root / f"file-{user}"
            (home / "checkout").mkdir(parents=True)
            (home / "config").mkdir(mode=0o700)
            hosts.append(SoakHost(f"file-{user}", user, home / "checkout", home / "config"))
        return hosts

    def _login(self, host: SoakHost) -> None:
        store = ["--store", host.store_url] if host.store_url else []
        done = subprocess.run(
            host.argv("login", "--server", self.server.url, "--username", host.user,
                      "--password-stdin", *store),
            input=self.passwords[host.user] + "\n", capture_output=True, text=True,
            env=host.env(), timeout=120, check=False)
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or ["(nothing on stderr)"]
            raise RuntimeError(f"soak: login on {host.name} exited {done.returncode}: "
                               f"{last[0]}")
