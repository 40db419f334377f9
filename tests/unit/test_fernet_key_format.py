"""The key of cidx-auth's encrypted files is a stored format: a token written by this
version must open after an upgrade, and only for the same user, project and server.
Spelled out here from the documented scheme (errata #14) with hashlib, not with the
adapter's own helpers, so a change to the derivation cannot pass unnoticed."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from adapters.fernet_cipher import (
    FernetCipher,
    identity_cipher,
    normalized_server,
    project_cipher,
    wipe,
)
from cidx_auth.domain.errors import CorruptStore

SECRET = bytes(range(32))
URL = "https://cidx.example.com"


class Secret:
    def __init__(self, value: bytes) -> None:
        self.calls = 0
        self._value = value

    def value(self) -> bytes:
        self.calls += 1
        return self._value


def fernet_for(salt_input: bytes) -> Fernet:
    salt = hashlib.sha256(salt_input).digest()
    key = hashlib.pbkdf2_hmac("sha256", SECRET, salt, 1_000, 32)
    return Fernet(base64.urlsafe_b64encode(key))


@pytest.mark.parametrize("written_url", [URL, URL + "/", f"  {URL}// "])
def test_a_project_token_opens_with_the_documented_key(tmp_path: Path, written_url: str) -> None:
    cipher = project_cipher(tmp_path, written_url, Secret(SECRET))
    salt_input = (b"cidx-auth project key v1\0" + str(tmp_path.resolve()).encode()
                  + b"\0" + URL.encode())
    expected = fernet_for(salt_input)
    assert expected.decrypt(cipher.encrypt(b"token")) == b"token"
    assert cipher.decrypt(expected.encrypt(b"token")) == b"token"


def test_a_shared_token_opens_with_the_documented_key() -> None:
    cipher = identity_cipher(URL + "/", "alice", Secret(SECRET))
    expected = fernet_for(b"cidx-auth shared identity key v1\0" + URL.encode() + b"\0alice")
    assert expected.decrypt(cipher.encrypt(b"token")) == b"token"


def test_another_project_server_user_or_secret_does_not_open_it(tmp_path: Path) -> None:
    token = project_cipher(tmp_path, URL, Secret(SECRET)).encrypt(b"token")
    others = [
        project_cipher(tmp_path / "other", URL, Secret(SECRET)),
        project_cipher(tmp_path, URL + "/other", Secret(SECRET)),
        project_cipher(tmp_path, URL, Secret(bytes(32))),
        identity_cipher(URL, "alice", Secret(SECRET)),
    ]
    for cipher in others:
        with pytest.raises(CorruptStore) as caught:
            cipher.decrypt(token)
        assert str(caught.value) == (
            "stored data cannot be decrypted here: it is damaged, or it was written "
            "for another project, server, user or machine"
        )
    shared = identity_cipher(URL, "alice", Secret(SECRET)).encrypt(b"token")
    with pytest.raises(CorruptStore):
        identity_cipher(URL, "bob", Secret(SECRET)).decrypt(shared)


def test_the_secret_is_read_once_and_only_when_first_used(tmp_path: Path) -> None:
    secret = Secret(SECRET)
    cipher = project_cipher(tmp_path, URL, secret)
    assert secret.calls == 0
    cipher.decrypt(cipher.encrypt(b"a"))
    cipher.encrypt(b"b")
    assert secret.calls == 1


def test_normalized_server() -> None:
    assert normalized_server(f" {URL}/ ") == URL
    assert normalized_server(URL + "//") == URL
    assert normalized_server(URL + "/api/") == URL + "/api"


def test_wipe_leaves_zeros_of_the_same_length() -> None:
    buffer = bytearray(b"secret token bytes")
    view = buffer  # the same object: wiped in place, not replaced
    wipe(buffer)
    assert view is buffer and buffer == bytearray(len(b"secret token bytes"))
    empty = bytearray()
    wipe(empty)
    assert empty == bytearray()


def test_a_damaged_token_is_one_opaque_error() -> None:
    cipher = FernetCipher(lambda: SECRET)
    token = cipher.encrypt(b"x")
    flipped = token[:40] + (b"B" if token[40:41] == b"A" else b"A") + token[41:]
    for damaged in (token[:-8], b"", b"gAAAAA" + token[6:12], flipped):
        with pytest.raises(CorruptStore, match="cannot be decrypted here"):
            cipher.decrypt(damaged)


@pytest.mark.posix
def test_a_project_whose_path_is_not_utf8_has_its_own_key(tmp_path: Path) -> None:
    root = tmp_path / os.fsdecode(b"caf\xe9")  # a Latin-1 name on a UTF-8 system
    root.mkdir()
    token = project_cipher(root, URL, Secret(SECRET)).encrypt(b"token")
    assert project_cipher(root, URL, Secret(SECRET)).decrypt(token) == b"token"
    with pytest.raises(CorruptStore):
        project_cipher(tmp_path, URL, Secret(SECRET)).decrypt(token)
