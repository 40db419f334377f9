"""The list of approved servers: real files in a private config directory.

It decides whether a project's ``.remote-config`` may choose the server, so a list that
anyone but the user's own cidx-auth wrote must approve nothing, and reading it must
create nothing (``status`` reads it too).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from adapters.approved_servers import SERVERS_NAME, ApprovedServers, approval
from adapters.secret_sources import FileSecret, secret_source
from cidx_auth.domain.errors import StorageError

SERVER = "https://cidx.example.com"


def servers(config: Path) -> ApprovedServers:
    return ApprovedServers(config, secret_source(config, {}))


def test_nothing_is_approved_and_reading_creates_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config"
    assert approval(SERVER, "alice") not in servers(config)
    assert not config.exists()  # no directory, no secret, no list


def test_an_approval_is_kept_in_one_normal_form(tmp_path: Path) -> None:
    config = tmp_path / "config"
    servers(config).add(SERVER + "/", " alice ")
    fresh = servers(config)  # another process, another day
    assert approval(SERVER, "alice") in fresh
    assert approval(SERVER + "/", "alice\t") in fresh  # compared as the server reads them
    assert approval(SERVER, "bob") not in fresh
    assert approval("https://cidx.example.org", "alice") not in fresh
    assert approval("http://cidx.example.com", "alice") not in fresh
    path = config / SERVERS_NAME
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    document = json.loads(path.read_text())
    assert document["servers"] == [{"server_url": SERVER, "username": "alice"}]


def test_adding_again_keeps_one_entry_and_the_others(tmp_path: Path) -> None:
    config = tmp_path / "config"
    list_ = servers(config)
    list_.add(SERVER, "alice")
    list_.add("https://other.example", "alice")
    list_.add(SERVER, "alice")
    document = json.loads((config / SERVERS_NAME).read_text())
    assert [entry["server_url"] for entry in document["servers"]] == [
        "https://other.example", SERVER]


@pytest.mark.parametrize("change", ["server", "user", "added", "mac", "unsigned", "json"])
def test_a_list_changed_outside_cidx_auth_approves_nothing_and_is_written_anew(
    tmp_path: Path, change: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config"
    servers(config).add(SERVER, "alice")
    path = config / SERVERS_NAME
    document = json.loads(path.read_text())
    evil = {"server_url": "https://evil.example", "username": "alice"}
    if change == "server":
        document["servers"][0]["server_url"] = evil["server_url"]
    elif change == "user":
        document["servers"][0]["username"] = "mallory"
    elif change == "added":
        document["servers"].append(evil)
    elif change == "mac":
        document["mac"] = "00" * 32
    elif change == "unsigned":
        del document["mac"]
    path.write_text("{not json" if change == "json" else json.dumps(document))

    with caplog.at_level(logging.WARNING):
        assert approval("https://evil.example", "alice") not in servers(config)
        assert approval(SERVER, "alice") not in servers(config)
    assert f"{path} is not used" in caplog.text and "approves no server" in caplog.text

    servers(config).add("https://cidx.example.net", "alice")  # the next approval rewrites it
    assert approval("https://cidx.example.net", "alice") in servers(config)
    assert approval("https://evil.example", "alice") not in servers(config)


def test_a_list_signed_under_another_secret_approves_nothing(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    servers(theirs).add(SERVER, "alice")
    servers(mine).add("https://unrelated.example", "bob")  # my own secret exists
    (mine / SERVERS_NAME).write_bytes((theirs / SERVERS_NAME).read_bytes())
    assert approval(SERVER, "alice") not in servers(mine)


def test_a_list_without_a_secret_to_check_it_approves_nothing_and_creates_none(
    tmp_path: Path
) -> None:
    config = tmp_path / "config"
    servers(config).add(SERVER, "alice")
    (config / "user.secret").unlink()
    assert approval(SERVER, "alice") not in servers(config)
    assert not (config / "user.secret").exists()


def test_the_secret_from_cidx_secret_file_signs_the_list(tmp_path: Path) -> None:
    secret = tmp_path / "ci.secret"
    secret.write_bytes(os.urandom(32))
    secret.chmod(0o600)
    config = tmp_path / "config"
    ApprovedServers(config, FileSecret(secret)).add(SERVER, "alice")
    assert approval(SERVER, "alice") in ApprovedServers(config, FileSecret(secret))
    assert approval(SERVER, "alice") not in servers(config)  # the file secret, not this one


def test_a_symlinked_list_approves_nothing_and_its_target_is_never_written(
    tmp_path: Path
) -> None:
    config = tmp_path / "config"
    servers(config).add(SERVER, "alice")
    target = tmp_path / "elsewhere.json"
    (config / SERVERS_NAME).rename(target)
    before = target.read_bytes()
    (config / SERVERS_NAME).symlink_to(target)
    assert approval(SERVER, "alice") not in servers(config)
    servers(config).add(SERVER, "alice")
    assert target.read_bytes() == before
    assert not (config / SERVERS_NAME).is_symlink()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root, to make a file owned by another uid")
def test_a_list_another_user_owns_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config"
    servers(config).add(SERVER, "alice")
    os.chown(config / SERVERS_NAME, 2002, 2002)
    with pytest.raises(StorageError, match="owned by another user"):
        approval(SERVER, "alice") in servers(config)  # noqa: B015


def test_approvals_made_at_once_are_all_kept(tmp_path: Path) -> None:
    config = tmp_path / "config"
    servers(config).add(SERVER, "alice")  # the secret exists before the race
    start = threading.Barrier(8)

    def approve(n: int) -> None:
        start.wait()
        servers(config).add(f"https://cidx-{n}.example", "alice")

    threads = [threading.Thread(target=approve, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = servers(config)
    assert all(approval(f"https://cidx-{n}.example", "alice") in found for n in range(8))
    assert approval(SERVER, "alice") in found
