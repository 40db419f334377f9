"""Where the per-user secret comes from: the file (default), the OS keyring, or a file
handed to a fleet (CIDX_SECRET_FILE). Keyring backends here are in-memory or failing."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import keyring
import keyring.core
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import KeyringError

from adapters.keyring_secret import ACCOUNT, SERVICE, KeyringSecret
from adapters.project_layout import ProjectLayout, ProjectSettings, load_settings, save_settings
from adapters.secret_sources import FileSecret, secret_source
from adapters.user_secret import UserSecret
from cidx_auth.app.fastpath import fresh_stored_token
from cidx_auth.domain.errors import ConfigurationError, StorageError
from tests.integration.conftest import Files
from tests.integration.storage_helpers import ALICE, SERVER_URL


class MemoryKeyring(KeyringBackend):
    """A keyring in a dict, standing in for the Keychain or the Secret Service."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.items[(service, username)]


class BrokenKeyring(MemoryKeyring):
    """A keyring that is there but fails, as a locked Keychain or a dead D-Bus does."""

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError("the keyring is locked")


def use_keyring(monkeypatch: pytest.MonkeyPatch, backend: Any) -> Any:
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)
    keyring.set_keyring(backend)
    monkeypatch.setenv("CIDX_SECRET_BACKEND", "keyring")
    return backend


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    backend: MemoryKeyring = use_keyring(monkeypatch, MemoryKeyring())
    return backend


def test_the_file_stays_the_default(config_dir: Path) -> None:
    source = secret_source(config_dir, environ={})
    assert isinstance(source, UserSecret)
    assert source.path == config_dir / "user.secret"


def test_the_keyring_keeps_the_secret_and_no_file_is_written(
    memory_keyring: MemoryKeyring, config_dir: Path
) -> None:
    first = secret_source(config_dir)
    assert isinstance(first, KeyringSecret)
    value = first.value()
    assert len(value) == 32
    assert base64.b64decode(memory_keyring.items[(SERVICE, ACCOUNT)]) == value
    assert secret_source(config_dir).value() == value
    assert not (config_dir / "user.secret").exists()


def test_switching_to_the_keyring_adopts_the_existing_file_secret(
    memory_keyring: MemoryKeyring, config_dir: Path
) -> None:
    from_file = UserSecret(config_dir).value()
    assert secret_source(config_dir).value() == from_file


@pytest.mark.parametrize("backend", [fail.Keyring(), BrokenKeyring()], ids=["none", "broken"])
def test_without_a_usable_keyring_the_file_is_used_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, config_dir: Path,
    backend: Any,
) -> None:
    use_keyring(monkeypatch, backend)
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"):
        value = secret_source(config_dir).value()
    assert value == UserSecret(config_dir).value()
    assert "keyring" in caplog.text and str(config_dir) in caplog.text


def test_a_damaged_keyring_entry_is_reported_not_replaced(
    memory_keyring: MemoryKeyring, config_dir: Path
) -> None:
    memory_keyring.items[(SERVICE, ACCOUNT)] = "not-a-secret"
    with pytest.raises(StorageError, match=r"keyring .* is damaged"):
        secret_source(config_dir).value()
    assert memory_keyring.items[(SERVICE, ACCOUNT)] == "not-a-secret"


def test_an_unknown_backend_is_a_configuration_error(config_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="CIDX_SECRET_BACKEND"):
        secret_source(config_dir, environ={"CIDX_SECRET_BACKEND": "vault"})


@pytest.mark.parametrize("encode", [bytes, base64.b64encode, base64.urlsafe_b64encode])
def test_a_secret_file_holds_raw_or_base64_bytes(
    tmp_path: Path, config_dir: Path, encode: Any
) -> None:
    secret = bytes(range(200, 232))  # both base64 alphabets differ on these bytes
    path = tmp_path / "fleet.secret"
    path.write_bytes(encode(secret) + (b"" if encode is bytes else b"\n"))
    source = secret_source(config_dir, environ={"CIDX_SECRET_FILE": str(path)})
    assert isinstance(source, FileSecret)
    assert source.value() == secret
    assert not config_dir.exists()  # nothing is created beside it


@pytest.mark.parametrize("content", [None, b"short", b"!" * 44, b"x" * 2000])
def test_an_unusable_secret_file_says_what_to_do(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "fleet.secret"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StorageError, match="CIDX_SECRET_FILE"):
        FileSecret(path).value()


def test_the_file_store_and_the_fast_path_agree_on_the_keyring_secret(
    memory_keyring: MemoryKeyring, project: Path, config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CIDX_CONFIG_DIR", str(config_dir))
    files = Files(project, config_dir)  # its fake clock starts at the real time
    files.credentials.save(ALICE)
    token = files.provider.get_token()
    save_settings(ProjectLayout(project), ProjectSettings(SERVER_URL, "alice"))
    assert memory_keyring.items and not (config_dir / "user.secret").exists()
    assert fresh_stored_token(project) == token
    monkeypatch.setenv("CIDX_STORE_URL", "redis://127.0.0.1:1/0")
    assert fresh_stored_token(project) is None  # a shared store: the full path reads it


def test_reading_signed_settings_never_creates_a_keyring_secret(tmp_path: Path) -> None:
    layout = ProjectLayout(tmp_path / "project")
    signer = KeyringSecret(UserSecret(tmp_path / "config"), backend=MemoryKeyring())
    save_settings(layout, ProjectSettings(SERVER_URL, "alice"), signer)
    empty = MemoryKeyring()  # the secret is gone from the keyring, and there is no file
    reader = KeyringSecret(UserSecret(tmp_path / "config-2"), backend=empty)
    with pytest.raises(ConfigurationError, match=r"secret in the OS keyring is missing.*login"):
        load_settings(layout, reader)
    assert empty.items == {} and not (tmp_path / "config-2").exists()
    assert load_settings(layout, signer) == ProjectSettings(SERVER_URL, "alice")
