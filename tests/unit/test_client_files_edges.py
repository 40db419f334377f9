"""The CIDX client's files at their edges: the blob's shape and padding, the key's
spellings, ``status``'s question, and what ``--migrate`` writes and leaves alone."""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import adapters.cidx_client_files as client_files
from adapters.cidx_client_files import (
    REMOTE_CONFIG,
    RemoteConfig,
    client_password_saved,
    decrypt_client_blob,
    read_client_credentials,
    remove_weak_copies,
)
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import CorruptStore, StorageError
from tests.cidx_client_format import (
    client_key,
    encrypt_client_blob,
    encrypt_client_bytes,
)
from tests.unit.client_project import JWT, PASSWORD, URL, USER, project, remote

OPAQUE = "the CIDX client's file cannot be decrypted here"
ROOT = Path("/home/alice/project")


def encrypt_unpadded(plaintext: bytes) -> bytes:
    """``plaintext`` (whole blocks) encrypted as the client would, but with no padding
    added: what a wrong key or a damaged file decrypts to, with chosen last bytes."""
    assert len(plaintext) % 16 == 0
    salt, iv = os.urandom(32), os.urandom(16)
    encryptor = Cipher(algorithms.AES(client_key(salt, USER, ROOT, URL)), modes.CBC(iv)).encryptor()
    return salt + iv + encryptor.update(plaintext) + encryptor.finalize()


# --- the blob -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [b"{}", b'{"k": "' + b"x" * 23 + b'"}', b'{"k": "' + b"x" * 7 + b'"}'],
    ids=["one-block", "two-whole-blocks", "one-whole-block"],
)
def test_the_shortest_blobs_and_whole_block_plaintexts_decrypt(plaintext: bytes) -> None:
    blob = encrypt_client_bytes(plaintext, USER, ROOT, URL)
    assert decrypt_client_blob(blob, USER, ROOT, URL) == json.loads(plaintext)


@pytest.mark.parametrize(
    "plaintext",
    [
        b'{"a": 1}' + b" " * 40,  # last byte 0x20: 32 "padding" bytes, all alike
        b'{"a": 1}' + b" " * 7 + b"\x02",  # says 2 bytes of padding, the one before differs
        b'{"a": 1}' + b" " * 7 + b"\x00",  # says no padding
    ],
    ids=["count-over-a-block", "uneven-padding", "zero-count"],
)
def test_a_blob_without_valid_padding_is_refused(plaintext: bytes) -> None:
    """Bad padding is how a wrong key shows: it must never be read as a document, even
    when what lies before it happens to be JSON."""
    with pytest.raises(CorruptStore) as caught:
        decrypt_client_blob(encrypt_unpadded(plaintext), USER, ROOT, URL)
    assert str(caught.value) == OPAQUE


@pytest.mark.parametrize("plaintext", [b"[1, 2]", b'"text"', b"null"])
def test_a_blob_that_is_not_an_object_gives_the_same_opaque_message(plaintext: bytes) -> None:
    with pytest.raises(CorruptStore) as caught:
        decrypt_client_blob(encrypt_client_bytes(plaintext, USER, ROOT, URL), USER, ROOT, URL)
    assert str(caught.value) == OPAQUE


def test_a_blob_not_of_the_clients_shape_costs_no_key_derivation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each key is 100 000 PBKDF2 rounds: a file that cannot be the client's (too short,
    not whole blocks) is refused before any is paid for."""
    derived: list[bytes] = []
    real = client_files.pbkdf2_sha256

    def counting(secret: bytes, salt: bytes, iterations: int) -> bytes:
        derived.append(salt)
        return real(secret, salt, iterations)

    monkeypatch.setattr(client_files, "pbkdf2_sha256", counting)
    directory = project(tmp_path, embed=False)
    config = remote(directory)
    for size in (16, 32, 48, 63, 65, 79):
        blob = b"\xff" + os.urandom(size - 1)
        with pytest.raises(CorruptStore):
            decrypt_client_blob(blob, USER, tmp_path, URL)
        (directory / ".creds").write_bytes(blob)
        with pytest.raises(client_files.NotLoggedIn):
            read_client_credentials(directory, tmp_path, config)
    assert derived == []


def test_the_url_as_written_is_tried_first() -> None:
    assert RemoteConfig(URL, USER, None, URL + "/").key_server_urls() == (URL + "/", URL)
    assert RemoteConfig(URL, USER, None, URL).key_server_urls() == (URL, URL + "/")
    assert RemoteConfig(URL, USER).key_server_urls() == (URL, URL + "/")


def test_a_server_path_keeps_its_letters(tmp_path: Path) -> None:
    for written, kept in ((URL + "/CIDX/", URL + "/CIDX"), (URL + "/api//", URL + "/api")):
        (tmp_path / REMOTE_CONFIG).write_text(
            json.dumps({"mode": "remote", "server_url": written, "username": USER}))
        config = remote(tmp_path)
        assert (config.server_url, config.written_server_url) == (kept, written)


@pytest.mark.posix
def test_a_project_root_in_a_symlink_loop_is_keyed_as_given(tmp_path: Path) -> None:
    directory = project(tmp_path / "files", embed=False)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    (directory / ".creds").write_bytes(encrypt_client_blob(
        {"username": USER, "password": PASSWORD, "server_url": URL}, USER, loop, URL))
    found = read_client_credentials(directory, loop, remote(directory))
    assert found == Credentials(USER, PASSWORD)


# --- status: is a password saved? -----------------------------------------------------


@pytest.mark.parametrize(
    ("creds_file", "embed", "saved"),
    [(True, True, True), (True, False, True), (False, True, True), (False, False, False)],
)
def test_client_password_saved(tmp_path: Path, creds_file: bool, embed: bool,
                               saved: bool) -> None:
    directory = project(tmp_path, creds_file=creds_file, embed=embed)
    assert client_password_saved(directory, remote(directory)) is saved


@pytest.mark.posix
def test_a_dangling_creds_link_counts_as_saved_without_being_read(tmp_path: Path) -> None:
    directory = project(tmp_path, creds_file=False, embed=False)
    (directory / ".creds").symlink_to(tmp_path / "nowhere")
    assert client_password_saved(directory, remote(directory)) is True


# --- --migrate ------------------------------------------------------------------------


@pytest.mark.parametrize("newline", [True, False], ids=["with-newline", "without"])
def test_migrate_rewrites_remote_config_as_the_client_lays_it_out(
    tmp_path: Path, newline: bool
) -> None:
    directory = project(tmp_path)
    config = directory / REMOTE_CONFIG
    document = json.loads(config.read_bytes())
    config.write_text(json.dumps(document, indent=2) + ("\n" if newline else ""))

    remove_weak_copies(directory)

    del document["encrypted_credentials"]
    assert config.read_text() == json.dumps(document, indent=2) + ("\n" if newline else "")


def test_migrate_without_remote_config_reports_only_the_creds_file(tmp_path: Path) -> None:
    directory = project(tmp_path)
    (directory / REMOTE_CONFIG).unlink()
    creds = directory / ".creds"
    assert remove_weak_copies(directory) == [f"the CIDX client's saved password file {creds}"]
    assert not creds.exists()
    assert remove_weak_copies(directory) == []


@pytest.mark.posix
def test_migrate_leaves_a_creds_link_and_its_target(tmp_path: Path) -> None:
    directory = project(tmp_path, embed=False)
    target = project(tmp_path / "elsewhere") / ".creds"
    before = target.read_bytes()
    (directory / ".creds").unlink()
    (directory / ".creds").symlink_to(target)
    assert remove_weak_copies(directory) == []
    assert (directory / ".creds").is_symlink()
    assert target.read_bytes() == before


def test_migrate_that_cannot_remove_creds_says_which_file_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = project(tmp_path, embed=False)
    creds = directory / ".creds"
    before = creds.read_bytes()
    real_unlink = Path.unlink

    def refusing(self: Path, missing_ok: bool = False) -> None:
        if self == creds:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", refusing)
    with pytest.raises(StorageError) as caught:
        remove_weak_copies(directory)
    assert str(caught.value) == f"could not remove {creds}: {os.strerror(errno.EACCES)}"
    assert caught.value.exit_code == 5
    assert creds.read_bytes() == before


def test_migrate_sweeps_a_stale_temp_but_not_one_in_flight(tmp_path: Path) -> None:
    """The client does not take cidx-auth's locks, so a fresh temp file may be another
    writer's; one an hour old was left by a killed one."""
    directory = project(tmp_path)
    stale, fresh = directory / ".remote-config.tmp-stale", directory / ".remote-config.tmp-fresh"
    stale.write_bytes(b"{}")
    fresh.write_bytes(b"{}")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))

    remove_weak_copies(directory)

    assert not stale.exists() and fresh.exists()
    assert stat.S_IMODE((directory / REMOTE_CONFIG).stat().st_mode) == 0o600


@pytest.mark.posix
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_client_file_owned_by_root_is_read_by_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout made with sudo leaves root's files: "owned by the user (or root)"."""
    directory = project(tmp_path, token=JWT)
    monkeypatch.setattr(os, "geteuid", lambda: 4321)  # this process as an ordinary user
    config = remote(directory)
    assert read_client_credentials(directory, tmp_path, config) == Credentials(USER, PASSWORD)
    assert client_files.read_client_token(directory, tmp_path, config) == JWT
