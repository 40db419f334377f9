"""The CIDX client's files (issue 14): read by their documented format, pruned on request."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.cidx_client_files import (
    REMOTE_CONFIG,
    RemoteConfig,
    decrypt_client_blob,
    read_client_credentials,
    read_client_token,
    read_remote_config,
    remove_weak_copies,
)
from adapters.file_io import is_foreign, is_own_format
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import ConfigurationError, CorruptStore, NotLoggedIn, StorageError
from tests.cidx_client_format import (
    encrypt_client_blob,
    encrypt_client_bytes,
    write_client_project,
)

URL = "https://cidx.example.com"
USER = "alice"
PASSWORD = "correct horse battery staple"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAwMH0.c2ln"
DOCUMENT = {"username": USER, "password": PASSWORD, "server_url": URL,
            "created_at": "2024-05-01T12:00:00+00:00"}


def project(root: Path, **options: object) -> dict[str, bytes]:
    settings: dict[str, object] = {"server_url": URL, "username": USER, "password": PASSWORD}
    return write_client_project(root, **(settings | options))  # type: ignore[arg-type]


def remote(root: Path) -> RemoteConfig:
    found = read_remote_config(root / ".code-indexer")
    assert found is not None
    return found


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        path.name: (path.read_bytes(), path.stat().st_mode, path.stat().st_mtime_ns)
        for path in sorted(directory.iterdir())
    }


# --- the format ---------------------------------------------------------------------


def test_known_answer_decrypts_with_the_documented_scheme() -> None:
    salt, iv, root = bytes(range(32)), bytes(range(100, 116)), Path("/home/alice/project")
    blob = encrypt_client_blob(DOCUMENT, USER, root, URL, salt=salt, iv=iv)

    # The scheme, done here directly: PBKDF2, AES-256-CBC, PKCS7.
    key = hashlib.pbkdf2_hmac(
        "sha256", b"alice:/home/alice/project:https://cidx.example.com", salt, 100_000, 32
    )
    assert blob[:32] == salt and blob[32:48] == iv and (len(blob) - 48) % 16 == 0
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(blob[48:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    assert json.loads(unpadder.update(padded) + unpadder.finalize()) == DOCUMENT

    assert decrypt_client_blob(blob, USER, root, URL) == DOCUMENT


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: blob[:40],  # shorter than salt + iv + one block
        lambda blob: blob[:-1],  # not whole blocks
        lambda blob: blob[:-16] + bytes(16),  # last block replaced: padding breaks
        lambda blob: blob[:32] + bytes(16) + blob[48:],  # another iv: first block garbled
    ],
)
def test_a_damaged_blob_is_one_opaque_error(damage: object) -> None:
    blob = encrypt_client_blob(DOCUMENT, USER, Path("/p"), URL)
    with pytest.raises(CorruptStore) as caught:
        decrypt_client_blob(damage(blob), USER, Path("/p"), URL)  # type: ignore[operator]
    assert str(caught.value) == "the CIDX client's file cannot be decrypted here"


@pytest.mark.parametrize("plaintext", [b"[1, 2]", b"not json", b'{"a": "\xff"}', b""])
def test_a_blob_that_is_not_a_utf8_json_object_is_refused(plaintext: bytes) -> None:
    blob = encrypt_client_bytes(plaintext, USER, Path("/p"), URL)
    with pytest.raises(CorruptStore):
        decrypt_client_blob(blob, USER, Path("/p"), URL)


def test_another_path_server_or_user_gives_another_key() -> None:
    blob = encrypt_client_blob(DOCUMENT, USER, Path("/p"), URL)
    for args in ((USER, Path("/q"), URL), (USER, Path("/p"), URL + "/"), ("bob", Path("/p"), URL)):
        with pytest.raises(CorruptStore):
            decrypt_client_blob(blob, *args)


def test_formats_are_told_apart() -> None:
    ours = Fernet(Fernet.generate_key()).encrypt(b"{}")
    client = encrypt_client_blob(DOCUMENT, USER, Path("/p"), URL)
    assert is_own_format(ours) and not is_foreign(ours)
    assert is_own_format(ours[:20])  # the first bytes are enough
    assert is_foreign(client) and not is_own_format(client)
    assert not is_foreign(b"gAAAAAgarbage 2")  # damaged, but ours: set aside, not kept
    assert not is_foreign(bytes(len(client)))  # zero-filled by a crash: damage, not foreign
    assert not is_foreign(client[:-1])  # not whole AES blocks: not the client's either


# --- .remote-config -----------------------------------------------------------------


def test_remote_config_is_read(tmp_path: Path) -> None:
    written = project(tmp_path, server_url=URL + "/")
    config = remote(tmp_path)
    assert (config.server_url, config.username) == (URL, USER)
    assert config.written_server_url == URL + "/"
    assert config.encrypted_credentials == written[".creds"]
    assert "encrypted_credentials" not in repr(config)


def test_no_remote_config_is_none(tmp_path: Path) -> None:
    assert read_remote_config(tmp_path / ".code-indexer") is None
    assert read_remote_config(tmp_path) is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"mode": "remote", "server_url": ', "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        (b'["remote"]', "is not a JSON object"),
        (b'{"mode": "remote", "username": "alice"}', "has no server_url"),
        (b'{"mode": "remote", "server_url": "https://x"}', "has no username"),
        (b'{"mode": "remote", "server_url": 5, "username": "alice"}', "has no server_url"),
        (b'{"mode": "remote", "server_url": "ftp://x", "username": "a"}', "http(s)://"),
        (b'{"mode": "remote", "server_url": "cidx.example.com", "username": "a"}', "http(s)"),
        (b'{"mode": "remote", "server_url": "https://x", "username": ""}', "empty username"),
    ],
)
def test_a_bad_remote_config_says_what_to_do_and_stays(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / REMOTE_CONFIG
    path.write_bytes(content)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        read_remote_config(tmp_path)
    message = str(caught.value)
    assert str(path) in message and problem in message
    assert "cidx-auth login --server URL --username NAME" in message
    assert snapshot(tmp_path) == before


def test_a_local_mode_project_has_no_server(tmp_path: Path) -> None:
    project(tmp_path, mode="local")
    directory = tmp_path / ".code-indexer"
    before = snapshot(directory)
    with pytest.raises(ConfigurationError, match="local-mode project has no server") as caught:
        read_remote_config(directory)
    assert "cidx-auth login --server URL --username NAME" in str(caught.value)
    assert str(directory / REMOTE_CONFIG) in str(caught.value)
    assert snapshot(directory) == before


def test_a_message_never_quotes_the_file(tmp_path: Path) -> None:
    secret = "https://alice:hunter2@cidx.example.com"
    (tmp_path / REMOTE_CONFIG).write_text(json.dumps({"mode": "remote", "server_url": secret}))
    with pytest.raises(ConfigurationError) as caught:
        read_remote_config(tmp_path)
    assert "hunter2" not in str(caught.value)


@pytest.mark.posix
def test_a_symlinked_remote_config_is_refused_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    project(elsewhere)
    target = elsewhere / ".code-indexer" / REMOTE_CONFIG
    before = (target.read_bytes(), target.stat().st_mode)
    (tmp_path / REMOTE_CONFIG).symlink_to(target)
    with pytest.raises(ConfigurationError, match="is a symbolic link"):
        read_remote_config(tmp_path)
    assert (target.read_bytes(), target.stat().st_mode) == before


@pytest.mark.posix
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / REMOTE_CONFIG)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        read_remote_config(tmp_path)


def test_a_huge_remote_config_is_refused(tmp_path: Path) -> None:
    document = {"mode": "remote", "server_url": URL, "username": USER, "pad": "x" * 70_000}
    (tmp_path / REMOTE_CONFIG).write_text(json.dumps(document))
    with pytest.raises(ConfigurationError, match="larger than 65536 bytes"):
        read_remote_config(tmp_path)


@pytest.mark.posix
def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    project(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real" / ".code-indexer")
    with pytest.raises(StorageError, match="symbolic link"):
        read_remote_config(tmp_path / "link")


@pytest.mark.posix
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_another_users_remote_config_is_refused(tmp_path: Path) -> None:
    project(tmp_path)
    path = tmp_path / ".code-indexer" / REMOTE_CONFIG
    os.chown(path, 2002, 2002)
    with pytest.raises(ConfigurationError, match=r"owned by another user \(uid 2002\)"):
        read_remote_config(tmp_path / ".code-indexer")


# --- the saved password -------------------------------------------------------------


@pytest.mark.parametrize(("creds_file", "embed"), [(True, False), (False, True), (True, True)])
def test_the_password_is_read(tmp_path: Path, creds_file: bool, embed: bool) -> None:
    project(tmp_path, creds_file=creds_file, embed=embed)
    directory = tmp_path / ".code-indexer"
    found = read_client_credentials(directory, tmp_path, remote(tmp_path))
    assert found == Credentials(USER, PASSWORD)


@pytest.mark.parametrize(("in_file", "in_key"), [(URL + "/", URL + "/"), (URL + "/", URL),
                                                  (URL, URL + "/")])
def test_the_url_is_tried_as_written_and_with_or_without_its_slash(
    tmp_path: Path, in_file: str, in_key: str
) -> None:
    project(tmp_path, server_url=in_file, embed=False)
    blob = encrypt_client_blob(DOCUMENT, USER, tmp_path, in_key)
    (tmp_path / ".code-indexer" / ".creds").write_bytes(blob)
    assert read_client_credentials(tmp_path / ".code-indexer", tmp_path, remote(tmp_path))


def test_the_embedded_copy_is_tried_when_creds_is_not_for_here(tmp_path: Path) -> None:
    project(tmp_path)
    other = encrypt_client_blob(DOCUMENT, USER, tmp_path / "elsewhere", URL)
    (tmp_path / ".code-indexer" / ".creds").write_bytes(other)
    found = read_client_credentials(tmp_path / ".code-indexer", tmp_path, remote(tmp_path))
    assert found.password == PASSWORD


def test_cidx_auths_own_creds_is_not_taken_for_the_clients(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / ".code-indexer" / ".creds").write_bytes(Fernet(Fernet.generate_key()).encrypt(b"x"))
    found = read_client_credentials(tmp_path / ".code-indexer", tmp_path, remote(tmp_path))
    assert found.password == PASSWORD  # from encrypted_credentials


def test_files_written_for_another_project_are_not_adopted(tmp_path: Path) -> None:
    here = tmp_path / "here"
    project(here, repo_path=tmp_path / "cloned-from")
    directory = here / ".code-indexer"
    with pytest.raises(NotLoggedIn) as caught:
        read_client_credentials(directory, here, remote(here))
    assert str(caught.value) == (
        f"the CIDX client's saved password in {directory / '.creds'} cannot be read for this "
        "project (it was written for another directory, server or user): run `cidx-auth login`"
    )
    assert PASSWORD not in str(caught.value)
    assert caught.value.exit_code == 3


def test_a_password_for_another_user_is_not_adopted(tmp_path: Path) -> None:
    project(tmp_path, embed=False)
    planted = encrypt_client_blob(DOCUMENT | {"username": "mallory"}, USER, tmp_path, URL)
    (tmp_path / ".code-indexer" / ".creds").write_bytes(planted)
    with pytest.raises(NotLoggedIn, match="cannot be read for this project"):
        read_client_credentials(tmp_path / ".code-indexer", tmp_path, remote(tmp_path))


def test_no_saved_password_at_all(tmp_path: Path) -> None:
    project(tmp_path, creds_file=False, embed=False)
    with pytest.raises(NotLoggedIn, match="no saved password"):
        read_client_credentials(tmp_path / ".code-indexer", tmp_path, remote(tmp_path))


# --- the client's token -------------------------------------------------------------


def test_the_clients_token_is_read(tmp_path: Path) -> None:
    project(tmp_path, token=JWT)
    assert read_client_token(tmp_path / ".code-indexer", tmp_path, remote(tmp_path)) == JWT


def test_the_clients_token_is_its_record_inside_the_password_field(tmp_path: Path) -> None:
    """As the client writes it: its credentials record, the token record as JSON text in
    ``password`` (what the fixture writes, spelled out here once by hand)."""
    written = project(tmp_path, token=JWT)
    document = decrypt_client_blob(written[".token"], USER, tmp_path, URL)
    assert set(document) == {"username", "password", "server_url", "created_at"}
    assert document["username"] == USER and document["server_url"] == URL
    record = json.loads(document["password"])
    assert set(record) == {"token", "expires_at", "created_at", "version"}
    assert record["token"] == JWT and record["version"] == "1.0"


def write_token_record(root: Path, document: dict[str, object]) -> None:
    """A ``.token`` holding ``document``, encrypted for this project as the client would."""
    project(root)
    blob = encrypt_client_blob(document, USER, root, URL)
    (root / ".code-indexer" / ".token").write_bytes(blob)


def record(**fields: object) -> str:
    return json.dumps({"token": JWT, "expires_at": "2024-05-01T12:10:00+00:00",
                       "created_at": "2024-05-01T12:00:00+00:00", "version": "1.0"} | fields)


def credentials_record(password: object, **fields: object) -> dict[str, object]:
    return {"username": USER, "password": password, "server_url": URL,
            "created_at": "2024-05-01T12:00:00+00:00"} | fields


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"token": JWT, "expires_at": "2024-05-01T12:10:00+00:00",
          "created_at": "2024-05-01T12:00:00+00:00", "version": "1.0"},
         "names another user (or none)"),  # the record at the top level: nobody writes it
        (credentials_record(record(), username="mallory"), "names another user (or none)"),
        (credentials_record(None), "holds no token record (no password text)"),
        (credentials_record({"token": JWT}), "holds no token record (no password text)"),
        (credentials_record("not json {"), "holds a token record that is not JSON"),
        (credentials_record(json.dumps("a" * 20_000)), "holds a token record over 16 KiB"),
        (credentials_record("[" * 10_000 + "]" * 10_000), "holds a token record over 16 KiB"),
        # Too deep for Python 3.11's parser (not JSON); 3.13 reads it (not an object).
        (credentials_record("[" * 5_000 + "]" * 5_000), "holds a token record that is not "),
        (credentials_record(json.dumps([JWT])), "not a JSON object"),
        (credentials_record(json.dumps(JWT)), "not a JSON object"),
        (credentials_record(record(token=None)), "holds a token record without a token"),
        (credentials_record(record(token=12)), "holds a token record without a token"),
        (credentials_record(record(token="")), "holds a token record without a token"),
        (credentials_record(json.dumps({"expires_at": "x"})),
         "holds a token record without a token"),
    ],
    ids=["top-level-record", "other-user", "no-password", "password-object", "not-json",
         "oversized", "oversized-nesting", "deep-nesting", "list", "string", "null-token",
         "number-token", "empty-token", "no-token"],
)
def test_a_token_record_that_is_not_the_clients_shape_is_not_used(
    tmp_path: Path, document: dict[str, object], reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_token_record(tmp_path, document)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        found = read_client_token(tmp_path / ".code-indexer", tmp_path, remote(tmp_path))
    assert found is None
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and reason in lines[0] and ".token" in lines[0], lines
    assert "the CIDX client's token is not used" in lines[0]
    assert JWT not in lines[0] and "Traceback" not in caplog.text
    assert all(record.levelno == logging.INFO for record in caplog.records)


def test_a_token_record_with_more_fields_is_read(tmp_path: Path) -> None:
    write_token_record(tmp_path, credentials_record(record(refresh="x"), extra=1))
    assert read_client_token(tmp_path / ".code-indexer", tmp_path, remote(tmp_path)) == JWT


def test_no_token_is_none(tmp_path: Path) -> None:
    project(tmp_path)
    assert read_client_token(tmp_path / ".code-indexer", tmp_path, remote(tmp_path)) is None


@pytest.mark.parametrize(
    "content",
    [os.urandom(64), b"garbage", Fernet(Fernet.generate_key()).encrypt(b"{}")],
    ids=["random", "short", "cidx-auth's own"],
)
def test_an_unreadable_token_is_none_and_logged(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    project(tmp_path)
    (tmp_path / ".code-indexer" / ".token").write_bytes(content)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert read_client_token(tmp_path / ".code-indexer", tmp_path, remote(tmp_path)) is None
    assert any(".token" in record.getMessage() for record in caplog.records)


def test_a_token_for_another_project_is_none(tmp_path: Path) -> None:
    project(tmp_path, token=JWT, repo_path=tmp_path / "elsewhere")
    assert read_client_token(tmp_path / ".code-indexer", tmp_path, remote(tmp_path)) is None


def test_reading_changes_nothing(tmp_path: Path) -> None:
    project(tmp_path, token=JWT)
    directory = tmp_path / ".code-indexer"
    os.chmod(directory / REMOTE_CONFIG, 0o644)  # never "corrected": not cidx-auth's file
    before = snapshot(directory)
    config = remote(tmp_path)
    read_client_credentials(directory, tmp_path, config)
    read_client_token(directory, tmp_path, config)
    assert snapshot(directory) == before


# --- --migrate ----------------------------------------------------------------------


def test_remove_weak_copies(tmp_path: Path) -> None:
    written = project(tmp_path, token=JWT)
    directory = tmp_path / ".code-indexer"
    config_path = directory / REMOTE_CONFIG
    os.chmod(config_path, 0o640)
    before = json.loads(written[".remote-config"])

    removed = remove_weak_copies(directory)

    assert len(removed) == 2 and all(str(directory) in line for line in removed)
    assert not (directory / ".creds").exists()
    after = json.loads(config_path.read_bytes())
    assert "encrypted_credentials" not in after
    assert after == {k: v for k, v in before.items() if k != "encrypted_credentials"}
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o640
    assert (directory / ".token").read_bytes() == written[".token"]
    assert sorted(path.name for path in directory.iterdir()) == [".remote-config", ".token"]
    assert remove_weak_copies(directory) == []
    assert remote(tmp_path).encrypted_credentials is None


def test_remove_weak_copies_leaves_cidx_auths_own_creds(tmp_path: Path) -> None:
    project(tmp_path, embed=False)
    ours = Fernet(Fernet.generate_key()).encrypt(b"{}")
    (tmp_path / ".code-indexer" / ".creds").write_bytes(ours)
    assert remove_weak_copies(tmp_path / ".code-indexer") == []
    assert (tmp_path / ".code-indexer" / ".creds").read_bytes() == ours


def test_remove_weak_copies_refuses_a_bad_remote_config(tmp_path: Path) -> None:
    project(tmp_path, mode="local")
    directory = tmp_path / ".code-indexer"
    before = snapshot(directory)
    with pytest.raises(ConfigurationError):
        remove_weak_copies(directory)
    assert snapshot(directory) == before


def test_embedded_credentials_that_are_not_base64_are_ignored(tmp_path: Path) -> None:
    document = {"mode": "remote", "server_url": URL, "username": USER,
                "encrypted_credentials": "not base64!"}
    (tmp_path / REMOTE_CONFIG).write_text(json.dumps(document))
    config = read_remote_config(tmp_path)
    assert config is not None and config.encrypted_credentials is None
