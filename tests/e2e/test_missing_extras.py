"""A command whose extra is not installed: exit 2, one line naming the extra and the
command that installs it, and nothing made on disk (issue 22, item 1).

The CLI runs in a child whose import system refuses the extra's packages, as a plain
``pip install cidx-auth`` would: a meta-path finder ahead of all others, then
``cidx_auth.app.entry.main`` with the argv given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import PASSWORD, USER, Cli

pytestmark = pytest.mark.slow

WITHOUT = """\
import sys

REFUSED = frozenset(sys.argv[1].split(","))


class Refuse:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Refuse)
sys.argv = ["cidx-auth", *sys.argv[2:]]
from cidx_auth.app.entry import main

main()
"""
SERVER = "starlette,hypercorn,jwt,trustme"


def run_without(
    refused: str, cli: Cli, *args: str, env_extra: dict[str, str] | None = None,
    stdin: str = PASSWORD + "\n",
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, refused, "--project", str(cli.project), *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
        env={**cli.env, **(env_extra or {})}, cwd=cli.project,
    )


def tree(*roots: Path) -> dict[str, float]:
    """Every path under ``roots`` with its modification time (a new or changed file shows)."""
    found = {}
    for root in roots:
        for directory, names, files in os.walk(root):
            for name in [*names, *files]:
                path = Path(directory, name)
                found[str(path)] = path.lstat().st_mtime
    return found


def refused_for(done: subprocess.CompletedProcess[str], extra: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cidx-auth: error: ")
    assert f"needs the {extra} extra" in lines[0]
    assert f"pip install 'cidx-auth[{extra}]'" in lines[0]
    assert "pipx inject cidx-auth " in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("command", [("serve", "--port", "0"), ("demo", "--seconds", "5")])
def test_serve_and_demo_without_the_server_extra(cli: Cli, tmp_path: Path,
                                                 command: tuple[str, ...]) -> None:
    before = tree(tmp_path)
    done = run_without(SERVER, cli, *command)
    refused_for(done, "server")
    assert tree(tmp_path) == before


def test_login_store_without_the_redis_extra_makes_nothing(cli: Cli, tmp_path: Path) -> None:
    before = tree(tmp_path)
    done = run_without("redis", cli, "login", "--store", "redis://127.0.0.1:1/0", "--server",
                       "http://127.0.0.1:9", "--username", "a", "--password-stdin")
    refused_for(done, "redis")
    assert "login --store" in done.stderr
    assert tree(tmp_path) == before
    assert not (cli.project / ".code-indexer").exists() and not cli.config_dir.exists()


def test_keyring_backend_without_the_keyring_extra_makes_nothing(cli: Cli,
                                                                 tmp_path: Path) -> None:
    before = tree(tmp_path)
    done = run_without("keyring", cli, "login", "--server", "http://127.0.0.1:9",
                       "--username", "a", "--password-stdin",
                       env_extra={"CIDX_SECRET_BACKEND": "keyring"})
    refused_for(done, "keyring")
    assert "CIDX_SECRET_BACKEND=keyring" in done.stderr
    assert "or set CIDX_SECRET_BACKEND=file" in done.stderr
    assert tree(tmp_path) == before
    assert not cli.config_dir.exists()  # no user.secret in its place


def test_a_store_url_in_the_environment_without_redis_makes_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    before = tree(tmp_path)
    done = run_without("redis", cli, "login", "--server", "http://127.0.0.1:9",
                       "--username", "a", "--password-stdin",
                       env_extra={"CIDX_STORE_URL": "redis://127.0.0.1:1/0"})
    refused_for(done, "redis")
    assert "CIDX_STORE_URL" in done.stderr
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", [
    ("token",), ("status",), ("status", "--json"), ("request", "GET", "/api/repos"),
    ("query", "parse jwt", "--repo", "backend"), ("logout",),
])
def test_every_command_of_a_project_refuses_a_store_url_without_redis(
    cli: Cli, tmp_path: Path, server: RunningServer, command: tuple[str, ...]
) -> None:
    assert cli.run("login", "--server", server.url, "--username", USER, "--password-stdin",
                   stdin=PASSWORD + "\n").returncode == 0
    before = tree(tmp_path)
    done = run_without("redis", cli, *command, env_extra={"CIDX_STORE_URL":
                                                          "redis://127.0.0.1:1/0"})
    if "--json" in command:  # status --json prints its object in every case: the error too
        report = json.loads(done.stdout)
        assert "needs the redis extra" in report["error"] and report["logged_in"] is False
        done = subprocess.CompletedProcess(done.args, done.returncode, "", done.stderr)
    refused_for(done, "redis")
    assert tree(tmp_path) == before
