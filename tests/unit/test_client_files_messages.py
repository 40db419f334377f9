"""What the user reads about the CIDX client's files: refusals word for word, INFO lines.

The messages name the file and say what to do; the INFO lines say which file was not
used and why. Both are part of the interface, so they are checked whole, not by a
fragment (a fragment lets a garbled or misdirected message through).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from adapters.cidx_client_files import (
    MAX_TOKEN_RECORD,
    REMOTE_CONFIG,
    RemoteConfig,
    read_client_credentials,
    read_client_token,
    read_remote_config,
    remove_weak_copies,
)
from cidx_auth.domain.errors import ConfigurationError, NotLoggedIn, StorageError
from tests.cidx_client_format import encrypt_client_blob
from tests.unit.client_project import JWT, PASSWORD, URL, USER, project, remote

FIX = ("repair it with the CIDX client (`cidx init --remote`), "
       "or run `cidx-auth login --server URL --username NAME`")
NOT_USED = "the CIDX client's token is not used"


def contents(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def storage_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(record.levelno, record.getMessage()) for record in caplog.records
            if record.name == "cidx_auth.storage"]


# --- .remote-config refused: the whole message ----------------------------------------


BAD_CONFIGS = [
    (b'{"mode": "remote", "server_url": ', "is not valid JSON"),
    (b"\xff\xfe", "is not valid JSON"),
    (b'["remote"]', "is not a JSON object"),
    (b'{"mode": "remote", "username": "alice"}', "has no server_url (or it is not a string)"),
    (b'{"mode": "remote", "server_url": 5, "username": "alice"}',
     "has no server_url (or it is not a string)"),
    (b'{"mode": "remote", "server_url": "https://x"}', "has no username (or it is not a string)"),
    (b'{"mode": "remote", "server_url": "https://x", "username": ""}', "has an empty username"),
    (b'{"mode": "remote", "server_url": "ftp://x", "username": "a"}',
     "has a server_url that is not an http(s):// URL"),
]


@pytest.mark.parametrize(("content", "problem"), BAD_CONFIGS)
@pytest.mark.parametrize("action", [read_remote_config, remove_weak_copies],
                         ids=["read", "migrate"])
def test_a_refused_remote_config_is_named_with_its_problem_and_the_fix(
    tmp_path: Path, content: bytes, problem: str, action: object
) -> None:
    path = tmp_path / REMOTE_CONFIG
    path.write_bytes(content)
    before = contents(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        action(tmp_path)  # type: ignore[operator]
    assert str(caught.value) == f"the CIDX client's file {path} {problem}: {FIX}"
    assert caught.value.exit_code == 2
    assert contents(tmp_path) == before  # --migrate rewrites nothing it would not read


def test_an_empty_username_is_refused_in_those_words() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RemoteConfig(URL, "")
    assert str(caught.value) == "has an empty username"


@pytest.mark.posix
def test_a_symlinked_remote_config_is_named_in_the_refusal(tmp_path: Path) -> None:
    target = project(tmp_path / "elsewhere") / REMOTE_CONFIG
    path = tmp_path / REMOTE_CONFIG
    path.symlink_to(target)
    with pytest.raises(ConfigurationError) as caught:
        read_remote_config(tmp_path)
    assert str(caught.value) == f"the CIDX client's file {path} is a symbolic link: {FIX}"


@pytest.mark.posix
def test_a_symlinked_client_directory_is_refused_with_what_to_do(tmp_path: Path) -> None:
    real = project(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    for action in (read_remote_config, remove_weak_copies):
        with pytest.raises(StorageError) as caught:
            action(link)
        assert str(caught.value) == (
            f"{link} is a symbolic link; cidx-auth does not follow it: "
            "replace it with a real directory"
        )
        assert caught.value.exit_code == 5
    assert remote(real).encrypted_credentials is not None  # nothing was removed behind it


# --- encrypted_credentials that are not base64 ----------------------------------------


@pytest.mark.parametrize("value", ["not base64!", "QUJD\nREVG", "QU JD", 12, ["QUJD"]],
                         ids=["punctuation", "newline", "space", "number", "list"])
def test_embedded_credentials_that_are_not_strict_base64_are_ignored_with_an_info_line(
    tmp_path: Path, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / REMOTE_CONFIG
    path.write_text(json.dumps({"mode": "remote", "server_url": URL, "username": USER,
                                "encrypted_credentials": value}))
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        config = read_remote_config(tmp_path)
    assert config is not None and config.encrypted_credentials is None
    assert storage_lines(caplog) == [
        (logging.INFO, f"{path}: encrypted_credentials is not base64 text; not used")
    ]


# --- the saved password ---------------------------------------------------------------


def test_an_embedded_password_for_another_project_names_remote_config(tmp_path: Path) -> None:
    directory = project(tmp_path, creds_file=False, repo_path=tmp_path / "cloned-from")
    with pytest.raises(NotLoggedIn) as caught:
        read_client_credentials(directory, tmp_path, remote(directory))
    assert str(caught.value) == (
        f"the CIDX client's saved password in {directory / REMOTE_CONFIG} cannot be read for "
        "this project (it was written for another directory, server or user): "
        "run `cidx-auth login`"
    )


@pytest.mark.parametrize("password", [12, None, ["x"], {"p": "x"}])
def test_a_saved_password_that_is_not_text_is_not_adopted(
    tmp_path: Path, password: object
) -> None:
    directory = project(tmp_path, embed=False)
    document = {"username": USER, "password": password, "server_url": URL}
    (directory / ".creds").write_bytes(encrypt_client_blob(document, USER, tmp_path, URL))
    with pytest.raises(NotLoggedIn) as caught:
        read_client_credentials(directory, tmp_path, remote(directory))
    assert "cannot be read for this project" in str(caught.value)


@pytest.mark.posix
def test_a_symlinked_creds_is_not_read_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = project(tmp_path, creds_file=False, embed=False)
    elsewhere = project(tmp_path / "elsewhere")
    (directory / ".creds").symlink_to(elsewhere / ".creds")
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"), \
            pytest.raises(NotLoggedIn, match="has no saved password"):
        read_client_credentials(directory, tmp_path, remote(directory))
    assert storage_lines(caplog) == [
        (logging.INFO, f"{directory / '.creds'} not read: is a symbolic link")
    ]


def test_cidx_auths_own_creds_is_said_not_to_be_the_clients(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = project(tmp_path)
    (directory / ".creds").write_bytes(Fernet(Fernet.generate_key()).encrypt(b"{}"))
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        found = read_client_credentials(directory, tmp_path, remote(directory))
    assert found.password == PASSWORD  # from encrypted_credentials
    assert storage_lines(caplog) == [
        (logging.INFO, f"{directory / '.creds'} is cidx-auth's own file, not the CIDX client's")
    ]


# --- the client's token: each INFO line whole -----------------------------------------


def record(**fields: object) -> str:
    return json.dumps({"token": JWT, "expires_at": "2024-05-01T12:10:00+00:00",
                       "created_at": "2024-05-01T12:00:00+00:00", "version": "1.0"} | fields)


def credentials_record(password: object, **fields: object) -> dict[str, object]:
    return {"username": USER, "password": password, "server_url": URL,
            "created_at": "2024-05-01T12:00:00+00:00"} | fields


def write_token(root: Path, document: dict[str, object]) -> Path:
    directory = project(root)
    (directory / ".token").write_bytes(encrypt_client_blob(document, USER, root, URL))
    return directory


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (credentials_record(record(), username="mallory"), "names another user (or none)"),
        (credentials_record(None), "holds no token record (no password text)"),
        (credentials_record("not json {"), "holds a token record that is not JSON"),
        (credentials_record(json.dumps("a" * 20_000)), "holds a token record over 16 KiB"),
        (credentials_record(json.dumps([JWT])), "holds a token record that is not a JSON object"),
        (credentials_record(record(token="")), "holds a token record without a token"),
    ],
    ids=["other-user", "no-password", "not-json", "oversized", "list", "empty-token"],
)
def test_a_token_not_used_is_one_info_line_naming_the_file_and_why(
    tmp_path: Path, document: dict[str, object], reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = write_token(tmp_path, document)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert read_client_token(directory, tmp_path, remote(directory)) is None
    assert storage_lines(caplog) == [
        (logging.INFO, f"{directory / '.token'} {reason}; {NOT_USED}")
    ]


def test_a_token_record_of_exactly_16_kib_is_read_one_more_character_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    padding = MAX_TOKEN_RECORD - len(record(pad=""))
    at_limit = record(pad="x" * padding)
    assert len(at_limit) == MAX_TOKEN_RECORD == 16 * 1024
    directory = write_token(tmp_path, credentials_record(at_limit))
    assert read_client_token(directory, tmp_path, remote(directory)) == JWT

    over = record(pad="x" * (padding + 1))
    (directory / ".token").write_bytes(
        encrypt_client_blob(credentials_record(over), USER, tmp_path, URL))
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert read_client_token(directory, tmp_path, remote(directory)) is None
    assert storage_lines(caplog) == [
        (logging.INFO, f"{directory / '.token'} holds a token record over 16 KiB; {NOT_USED}")
    ]


@pytest.mark.parametrize(
    "content",
    [os.urandom(64), b"\xffgarbage", None],
    ids=["client-shaped", "short", "for-another-project"],
)
def test_a_token_that_cannot_be_decrypted_here_is_one_info_line(
    tmp_path: Path, content: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    if content is None:
        directory = project(tmp_path, token=JWT, repo_path=tmp_path / "elsewhere")
    else:
        directory = project(tmp_path)
        (directory / ".token").write_bytes(content)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert read_client_token(directory, tmp_path, remote(directory)) is None
    assert storage_lines(caplog) == [
        (logging.INFO, f"{directory / '.token'} cannot be read for this project; {NOT_USED}")
    ]


def test_cidx_auths_own_token_is_said_not_to_be_the_clients(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = project(tmp_path)
    (directory / ".token").write_bytes(Fernet(Fernet.generate_key()).encrypt(b"{}"))
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert read_client_token(directory, tmp_path, remote(directory)) is None
    assert storage_lines(caplog) == [
        (logging.INFO, f"{directory / '.token'} is cidx-auth's own file, not the CIDX client's")
    ]


@pytest.mark.posix
def test_a_fifo_token_is_not_read_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = project(tmp_path)
    os.mkfifo(directory / ".token")
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert read_client_token(directory, tmp_path, remote(directory)) is None
    assert storage_lines(caplog) == [
        (logging.INFO, f"{directory / '.token'} not read: is not a regular file")
    ]
