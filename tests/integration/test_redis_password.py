"""The Redis password: from the environment or a private file, never from argv or auth.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.project_layout import ProjectSettings
from adapters.redis_connection import connect, ping, refuse_password, store_password
from cidx_auth.domain.errors import ConfigurationError, StorageError
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.integration.redis_support import RedisServer, redis_binary

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-redis-pass"


@pytest.fixture(scope="module")
def guarded() -> Iterator[RedisServer]:
    with RedisServer(redis_binary(), password=PASSWORD) as running:
        yield running


def password_file(tmp_path: Path, mode: int = 0o600, content: str = PASSWORD + "\n") -> Path:
    path = tmp_path / "redis-password"
    path.write_text(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("url", [
    f"redis://:{PASSWORD}@127.0.0.1:6379/0",
    f"redis://default:{PASSWORD}@127.0.0.1:6379/0",
    f"rediss://127.0.0.1:6380/0?password={PASSWORD}",
])
def test_a_password_in_a_store_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(ConfigurationError, match="CIDX_STORE_PASSWORD_FILE") as refused:
        refuse_password(url, "--store")
    assert PASSWORD not in str(refused.value)
    with pytest.raises(ConfigurationError) as stored:
        ProjectSettings("https://cidx.example.com", "alice", store_url=url)
    assert PASSWORD not in str(stored.value)


def test_a_store_url_with_a_user_and_no_password_is_fine() -> None:
    refuse_password("redis://cidx@127.0.0.1:6379/0", "--store")


def test_the_password_comes_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    assert store_password({}) is None
    assert store_password({"CIDX_STORE_PASSWORD": "p"}) == "p"
    path = password_file(tmp_path)
    assert store_password({"CIDX_STORE_PASSWORD_FILE": str(path)}) == PASSWORD


@pytest.mark.posix
@pytest.mark.parametrize(("mode", "content", "reason"), [
    (0o640, PASSWORD, "has mode 640"),
    (0o604, PASSWORD, "has mode 604"),
    (0o600, "\n", "is empty"),
])
def test_a_password_file_others_can_read_or_an_empty_one_is_refused(
    tmp_path: Path, mode: int, content: str, reason: str
) -> None:
    path = password_file(tmp_path, mode, content)
    with pytest.raises(StorageError, match=reason) as refused:
        store_password({"CIDX_STORE_PASSWORD_FILE": str(path)})
    assert refused.value.exit_code == 5 and PASSWORD not in str(refused.value)


@pytest.mark.posix
def test_a_password_file_that_is_a_link_missing_or_another_users_is_refused(
    tmp_path: Path
) -> None:
    target = password_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(target)
    for path, reason in ((link, "symbolic link"), (tmp_path / "none", "does not exist")):
        with pytest.raises(StorageError, match=reason):
            store_password({"CIDX_STORE_PASSWORD_FILE": str(path)})
    if os.geteuid() != 0:
        pytest.skip("making a file another user's needs root")
    os.chown(target, 2002, 2002)
    with pytest.raises(StorageError, match="owned by another user"):
        store_password({"CIDX_STORE_PASSWORD_FILE": str(target)})


def test_a_guarded_redis_is_reached_with_the_password_from_env_or_file(
    guarded: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CIDX_STORE_PASSWORD", raising=False)
    monkeypatch.delenv("CIDX_STORE_PASSWORD_FILE", raising=False)
    with pytest.raises(StorageError, match="CIDX_STORE_PASSWORD") as refused:
        ping(guarded.url)  # no password: Redis says so, and the hint names where it goes
    assert "AuthenticationError" in str(refused.value)
    monkeypatch.setenv("CIDX_STORE_PASSWORD", PASSWORD)
    ping(guarded.url)
    connect(guarded.url).set("via-env", b"1")
    monkeypatch.delenv("CIDX_STORE_PASSWORD")
    monkeypatch.setenv("CIDX_STORE_PASSWORD_FILE", str(password_file(tmp_path)))
    assert connect(guarded.url).get("via-env") == b"1"
    monkeypatch.setenv("CIDX_STORE_PASSWORD", "wrong")  # the variable wins over the file
    with pytest.raises(StorageError, match="did not answer"):
        ping(guarded.url)


def test_login_keeps_the_token_in_a_guarded_redis_and_no_password_in_auth_json(
    guarded: RedisServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    env["CIDX_CONFIG_DIR"] = str(tmp_path / "config")
    env["CIDX_STORE_PASSWORD_FILE"] = str(password_file(tmp_path))
    project = tmp_path / "project"
    project.mkdir()

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cidx_auth", "--project", str(project), *args],
            input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False,
        )

    with RunningServer(ServerConfig(users={"alice": "pw-1234"})) as auth:
        done = run("login", "--server", auth.url, "--username", "alice", "--password-stdin",
                   "--store", guarded.url, stdin="pw-1234\n")
        assert done.returncode == 0, done.stderr
        token = run("token")
        assert token.returncode == 0, token.stderr
    settings = (project / ".code-indexer" / "auth.json").read_text()
    assert json.loads(settings)["store_url"] == guarded.url and PASSWORD not in settings
    assert guarded.client().keys("cidx-auth:*")  # the session is in the guarded Redis
