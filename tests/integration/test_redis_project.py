"""Wiring the shared store: one secret across hosts, settings and env, and the CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.fernet_cipher import identity_cipher
from adapters.file_token_store import FileTokenStore
from adapters.memory import FakeClock, ScriptedGateway
from adapters.project_layout import ProjectSettings
from adapters.redis_connection import connect
from adapters.redis_token_store import RedisTokenStore, identity_key
from adapters.secret_sources import secret_source
from cidx_auth.app.container import build_project, in_redis
from cidx_auth.app.project import open_project_at
from cidx_auth.domain.errors import ConfigurationError
from cidx_auth.domain.rules import Rules
from cidx_auth.service.provider import TokenProvider
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.integration.redis_support import RedisServer, free_port, make_fleet, redis_binary
from tests.integration.storage_helpers import ALICE, SERVER_URL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer(redis_binary()) as running:
        yield running


@pytest.fixture
def url(server: RedisServer) -> str:
    connect(server.url).flushall()
    return server.url


def provider_on(
    url: str, project: Path, config: Path | None, gateway: ScriptedGateway
) -> TokenProvider:
    container = build_project(project, SERVER_URL, gateway, clock=gateway.clock,
                              shared=in_redis(url, ALICE.username), config_dir=config)
    container.credential_store().save(ALICE)
    provider: TokenProvider = container.token_provider()
    return provider


def test_hosts_with_one_secret_share_the_token_and_a_stranger_cannot(
    tmp_path: Path, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = make_fleet(tmp_path / "fleet", 2)
    stranger = make_fleet(tmp_path / "stranger", 1)[0]  # another secret
    gateway = ScriptedGateway(FakeClock(time.time()), {ALICE.username: ALICE.password})
    token = provider_on(url, first.project, first.config, gateway).get_token()
    assert provider_on(url, second.project, second.config, gateway).get_token() == token
    assert gateway.calls == 1
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"):
        other = provider_on(url, stranger.project, stranger.config, gateway).get_token()
    assert other != token and gateway.logins == 2  # it had to log in: the churn to look for
    assert "same per-user secret" in caplog.text


def test_a_fleet_secret_file_stands_in_for_the_config_dir(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "ci-secret"
    secret.write_text("3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=\n")
    monkeypatch.setenv("CIDX_SECRET_FILE", str(secret))
    gateway = ScriptedGateway(FakeClock(time.time()), {ALICE.username: ALICE.password})
    projects = [tmp_path / "a", tmp_path / "b"]
    tokens = {provider_on(url, path, None, gateway).get_token() for path in projects}
    assert len(tokens) == 1 and gateway.calls == 1
    assert not (tmp_path / "default-config").exists()


def test_open_project_picks_redis_from_settings_or_environment(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def store(settings: ProjectSettings) -> object:
        project = open_project_at(tmp_path, settings)
        try:
            return project.container.token_store()
        finally:
            project.close()

    assert isinstance(store(ProjectSettings(SERVER_URL, "alice")), FileTokenStore)
    shared = store(ProjectSettings(SERVER_URL, "alice", store_url=url))
    assert isinstance(shared, RedisTokenStore)
    assert shared.key == identity_key(SERVER_URL, "alice") and shared.url == url
    monkeypatch.setenv("CIDX_STORE_URL", url.replace("/0", "/5"))
    overridden = store(ProjectSettings(SERVER_URL, "alice", store_url=url))
    assert isinstance(overridden, RedisTokenStore) and overridden.url.endswith("/5")
    with pytest.raises(ConfigurationError, match="keyed by the username"):
        store(ProjectSettings(SERVER_URL, None))
    monkeypatch.setenv("CIDX_STORE_URL", "memcached://h:1")
    with pytest.raises(ConfigurationError, match="redis://"):
        store(ProjectSettings(SERVER_URL, "alice"))


def cli(project: Path, env: dict[str, str], *args: str, stdin: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cidx_auth", "--project", str(project), *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def test_cli_login_with_store_keeps_the_token_in_redis(tmp_path: Path, url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    env["CIDX_CONFIG_DIR"] = str(tmp_path / "config")
    project = tmp_path / "project"
    project.mkdir()
    with RunningServer(ServerConfig(users={"alice": "pw-1234"})) as auth:
        login = ["login", "--server", auth.url, "--username", "alice", "--password-stdin"]
        refused = cli(project, env, *login, "--store", "http://redis:6379", stdin="pw-1234\n")
        assert refused.returncode == 2 and "redis://" in refused.stderr
        dead = f"redis://127.0.0.1:{free_port()}/0"
        unreachable = cli(project, env, *login, "--store", dead, stdin="pw-1234\n")
        assert unreachable.returncode == 5 and "did not answer" in unreachable.stderr
        assert not (project / ".code-indexer" / "auth.json").exists()
        done = cli(project, env, *login, "--store", url, stdin="pw-1234\n")
        assert done.returncode == 0, done.stderr
        token = cli(project, env, "token")
        assert token.returncode == 0, token.stderr
        users = auth.stats()["users"]["alice"]
    assert (users["logins"], users["refreshes"]) == (1, 0)
    directory = project / ".code-indexer"
    assert not (directory / ".token").exists()
    assert json.loads((directory / "auth.json").read_text())["store_url"] == url
    cipher = identity_cipher(auth.url, "alice", secret_source(tmp_path / "config", {}))
    stored = RedisTokenStore(connect(url), identity_key(auth.url, "alice"), cipher,
                             rules=Rules()).load()
    assert stored is not None and stored.token.raw == token.stdout.strip()
