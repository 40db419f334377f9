"""Keys belong to one user and one project; secrets never show up where they should not."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from adapters.fernet_cipher import derive_key, project_cipher, project_salt, wipe
from adapters.user_secret import UserSecret, default_config_dir
from cidx_auth.domain.errors import CidxAuthError, CorruptStore, StorageError
from cidx_auth.domain.events import EventKind
from tests.integration.conftest import Files
from tests.integration.storage_helpers import ALICE, SERVER_URL


def test_a_token_copied_into_another_project_is_set_aside_and_recovered(
    files: Files, tmp_path: Path, config_dir: Path
) -> None:
    files.provider.login(ALICE)
    other_project = tmp_path / "other"
    (other_project / ".code-indexer").mkdir(parents=True, mode=0o700)
    for name in (".token", ".creds"):
        shutil.copy2(files.store.path.parent / name, other_project / ".code-indexer" / name)
    other = Files(other_project, config_dir)
    other.credentials.save(ALICE)  # its own credentials; the copied token stays foreign

    assert other.store.load() is None
    assert list((other_project / ".code-indexer").glob(".token.corrupt-*"))
    token = other.provider.get_token()
    assert other.gateway.logins == 1
    loaded = other.store.load()
    assert loaded is not None
    assert loaded.token.raw == token


def test_a_token_from_another_user_does_not_decrypt(
    files: Files, project: Path, tmp_path: Path
) -> None:
    files.provider.login(ALICE)
    stranger = Files(project, tmp_path / "another-users-config")
    assert stranger.store.load() is None
    with pytest.raises(StorageError, match="cidx-auth login"):
        stranger.credentials.load()


def test_the_same_project_for_another_server_has_another_key(
    project: Path, config_dir: Path
) -> None:
    secret = UserSecret(config_dir)
    here = project_cipher(project, SERVER_URL, secret)
    elsewhere = project_cipher(project, "https://other.test", secret)
    with pytest.raises(CorruptStore):
        elsewhere.decrypt(here.encrypt(b"payload"))
    # A trailing slash names the same server.
    assert project_cipher(project, SERVER_URL + "/", secret).decrypt(
        here.encrypt(b"payload")
    ) == b"payload"


@pytest.mark.posix
def test_the_salt_is_the_resolved_project_path(project: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-project"
    link.symlink_to(project)
    assert project_salt(link, SERVER_URL) == project_salt(project, SERVER_URL)
    assert project_salt(tmp_path, SERVER_URL) != project_salt(project, SERVER_URL)
    assert derive_key(b"k" * 32, b"salt") != derive_key(b"K" * 32, b"salt")


def test_the_config_directory_comes_from_the_environment(tmp_path: Path) -> None:
    explicit = {"CIDX_CONFIG_DIR": "/a", "XDG_CONFIG_HOME": "/b"}
    assert default_config_dir(explicit) == Path("/a")
    assert default_config_dir({"XDG_CONFIG_HOME": "/b"}) == Path("/b/cidx")
    assert default_config_dir({}) == Path.home() / ".config" / "cidx"


def test_the_default_user_secret_follows_cidx_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIDX_CONFIG_DIR", str(tmp_path / "mine"))
    first = UserSecret().value()
    assert (tmp_path / "mine" / "user.secret").read_bytes() == first
    assert UserSecret().value() == first
    monkeypatch.setenv("CIDX_CONFIG_DIR", str(tmp_path / "theirs"))
    assert UserSecret().value() != first


def test_a_damaged_user_secret_is_reported_not_replaced(config_dir: Path) -> None:
    config_dir.mkdir(mode=0o700)
    (config_dir / "user.secret").write_bytes(b"short")
    with pytest.raises(StorageError, match="is damaged; move it away"):
        UserSecret(config_dir).value()
    assert (config_dir / "user.secret").read_bytes() == b"short"


def test_wipe_overwrites_the_buffer_in_place() -> None:
    buffer = bytearray(b"password=hunter2")
    view = memoryview(buffer)  # the same memory, seen after the wipe
    wipe(buffer)
    assert bytes(view) == bytes(len(buffer))


def test_no_secret_reaches_logs_messages_or_files(
    files: Files, project: Path, config_dir: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = project / ".code-indexer"
    errors: list[BaseException] = []
    sessions = []
    with caplog.at_level(logging.DEBUG):
        sessions.append(files.provider.login(ALICE))

        os.chmod(directory / ".token", 0o644)  # a permission warning
        Files(project, config_dir).store.load()

        (directory / ".token").write_bytes(b"gAAAAAgarbage")  # set aside (a warning), a login
        relogin = Files(project, config_dir)
        relogin.provider.get_token()
        sessions.append(relogin.provider.session)

        (directory / ".creds").write_bytes(b"gAAAAAgarbage")
        with pytest.raises(CidxAuthError) as unreadable:
            Files(project, config_dir).credentials.load()
        errors.append(unreadable.value)
        files.credentials.save(ALICE)

        def no_space(*_: object) -> None:
            raise OSError(28, "No space left on device")

        (directory / ".token").unlink()
        monkeypatch.setattr(os, "replace", no_space)
        degraded = Files(project, config_dir)
        degraded.provider.get_token()  # logs in, cannot save: warns and carries on
        sessions.append(degraded.provider.session)
        with pytest.raises(CidxAuthError) as failed:
            degraded.store.save(sessions[0])
        errors.append(failed.value)
        monkeypatch.undo()

    assert degraded.events[EventKind.STORAGE_DEGRADED] == 1
    assert "mode 644" in caplog.text  # the warnings did happen
    assert "could not be used" in caplog.text
    assert "No space left on device" in caplog.text
    secrets = [ALICE.password]
    for session in sessions:
        assert session is not None
        secrets += [session.token.raw, *filter(None, [session.refresh_token])]
        assert session.token.raw not in repr(session)
    texts = [caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors)]
    stored = b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())
    stored += b"".join(p.read_bytes() for p in config_dir.iterdir())
    for secret in secrets:
        assert all(secret not in text for text in texts)
        assert secret.encode() not in stored
