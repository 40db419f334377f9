"""What a refused ``auth.json`` tells the user: which file, why, and the way out (login)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.settings_seal import check, no_secret, seal
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
