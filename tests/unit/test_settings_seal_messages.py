"""What a refused ``auth.json`` tells the user: which file, why, and the way out (login)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest

from adapters.settings_seal import (
    ca_digest,
    check,
    no_secret,
    read_ca_bundle,
    seal,
    seal_with,
    verifies,
)
from cidx_auth.domain.errors import ConfigurationError

LOGIN = ("run `cidx-auth login --server URL --username NAME` (with --store and --ca-bundle "
         "if you use them) to record the settings again")
SECRET = b"s" * 32


def never() -> bytes:
    raise AssertionError("the secret was asked for")


@pytest.mark.parametrize("document", [{"server_url": "https://x"}, {"mac": None}, {}])
def test_an_unsigned_file_is_refused_without_asking_for_the_secret(
    tmp_path: Path, document: dict[str, object]
) -> None:
    path = tmp_path / "auth.json"
    with pytest.raises(ConfigurationError) as caught:
        check(document, path, tmp_path, never)
    assert str(caught.value) == (
        f"{path} is not signed: an earlier cidx-auth or a hand edit wrote it, so its "
        f"settings (store, CA bundle, server) are not used; {LOGIN}"
    )
    assert caught.value.exit_code == 2


def test_a_changed_file_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    sealed = seal({"server_url": "https://x"}, tmp_path, SECRET)
    check(sealed, path, tmp_path, lambda: SECRET)  # as written: accepted
    with pytest.raises(ConfigurationError) as caught:
        check(sealed | {"server_url": "https://evil"}, path, tmp_path, lambda: SECRET)
    assert str(caught.value) == (
        f"{path} was changed outside cidx-auth, copied from another project, or written "
        "under another per-user secret, so its settings (store, CA bundle, server) are "
        f"not used. Settings change only through login: {LOGIN}"
    )


def test_a_missing_secret_is_named(tmp_path: Path) -> None:
    path, secret = tmp_path / "auth.json", tmp_path / "secret"
    assert str(no_secret(path, secret)) == (
        f"{path} cannot be checked: the per-user secret {secret} is missing (so nothing "
        f"stored for this project opens either); {LOGIN}"
    )
    assert "the per-user secret in the OS keyring is missing" in str(no_secret(path, None))


# --- the seal is a stored format: spelled out with hmac and hashlib --------------------


def test_the_seal_is_the_documented_hmac(tmp_path: Path) -> None:
    document = {"server_url": "https://x", "store_url": None, "b": [1, "é"]}
    key = hmac.new(SECRET, b"cidx-auth settings v1\0" + str(tmp_path.resolve()).encode(),
                   hashlib.sha256).digest()
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=True).encode()
    mac = hmac.new(key, canonical, hashlib.sha256).hexdigest()
    assert seal(document | {"mac": "old"}, tmp_path, SECRET) == document | {"mac": mac}
    assert verifies(document | {"mac": mac}, key)
    assert seal_with(document, key) == document | {"mac": mac}


@pytest.mark.parametrize("spoil", [str.upper, lambda mac: mac[:-1], lambda mac: mac + "0",
                                   lambda mac: "", lambda mac: mac[:-2] + "zz",
                                   lambda mac: bytes.fromhex(mac), lambda mac: None])
def test_a_mac_not_as_written_does_not_verify(tmp_path: Path, spoil: Any) -> None:
    key = b"k" * 32
    sealed = seal_with({"a": 1}, key)
    assert verifies(sealed, key)
    assert not verifies(sealed | {"mac": spoil(sealed["mac"])}, key)


def test_a_changed_ca_bundle_is_refused_with_the_way_to_accept_it(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    pinned = ca_digest(bundle)
    assert pinned == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert read_ca_bundle(bundle, pinned) == bundle.read_bytes()
    bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\nchanged\n")
    with pytest.raises(ConfigurationError) as caught:
        read_ca_bundle(bundle, pinned)
    assert str(caught.value) == (
        f"the CA bundle {bundle} is not the file `cidx-auth login` recorded (its content "
        "changed): it is not trusted. If the change is yours, run "
        "`cidx-auth login --ca-bundle ...` again to accept it"
    )


def test_an_unreadable_ca_bundle_says_why_and_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "gone.pem"
    for action in (lambda: read_ca_bundle(missing, None), lambda: ca_digest(missing)):
        with pytest.raises(ConfigurationError) as caught:
            action()
        assert str(caught.value) == (
            f"the CA bundle {missing} cannot be read (No such file or directory); "
            "run `cidx-auth login --ca-bundle FILE` again with a readable PEM file"
        )


def test_a_read_error_without_a_description_is_named_by_its_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(b"pem")

    def failing(self: Path) -> bytes:
        raise PermissionError

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(ConfigurationError) as caught:
        read_ca_bundle(bundle, None)
    assert str(caught.value) == (
        f"the CA bundle {bundle} cannot be read (PermissionError); "
        "run `cidx-auth login --ca-bundle FILE` again with a readable PEM file"
    )


@pytest.mark.posix
def test_a_project_whose_path_is_not_utf8_is_signed_too(tmp_path: Path) -> None:
    root = tmp_path / os.fsdecode(b"caf\xe9")  # a Latin-1 name on a UTF-8 system
    root.mkdir()
    sealed = seal({"server_url": "https://x"}, root, SECRET)
    check(sealed, root / "auth.json", root, lambda: SECRET)
    with pytest.raises(ConfigurationError):
        check(sealed, tmp_path / "auth.json", tmp_path, lambda: SECRET)
