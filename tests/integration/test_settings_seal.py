"""``auth.json`` is signed under the per-user secret, and the CA bundle pinned by content."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from adapters.http_settings import HttpSettings, ssl_context
from adapters.project_layout import ProjectLayout, ProjectSettings, load_settings, save_settings
from adapters.settings_seal import ca_digest, read_ca_bundle
from adapters.user_secret import UserSecret
from cidx_auth.app.project import open_project
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import ConfigurationError
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from refserver.tls import ensure_tls_material
from tests.settings_signing import write_signed

CHANGED = "changed outside cidx-auth"


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    return ensure_tls_material(tmp_path / "tls").ca_file


@pytest.fixture
def full(project: Path, ca_file: Path) -> ProjectLayout:
    """A project whose settings use every field, saved as login saves them."""
    layout = ProjectLayout(project)
    save_settings(layout, ProjectSettings(
        "https://cidx.example.com", "alice", ("HS256",), str(ca_file),
        "redis://redis.internal:6379/0", plain_http=False, ca_bundle_sha256=ca_digest(ca_file),
    ))
    return layout


def edit(layout: ProjectLayout, change: Any) -> None:
    """A hand edit: the JSON changed, the MAC left as it was."""
    document = json.loads(layout.settings.read_text())
    change(document)
    layout.settings.write_text(json.dumps(document))


@pytest.mark.parametrize(("field", "value"), [
    ("server_url", "https://cidx.evil.example"),
    ("username", "mallory"),
    ("allowed_algorithms", ["HS256", "RS256"]),
    ("ca_bundle", "/tmp/attacker-ca.pem"),
    ("ca_bundle_sha256", "00" * 32),
    ("store_url", "redis://attacker.example:6379/0"),
    ("plain_http", True),
    ("a_field_of_a_later_version", "anything"),
])
def test_a_change_to_any_field_is_refused(full: ProjectLayout, field: str, value: Any) -> None:
    assert load_settings(full) is not None  # it verifies as written
    edit(full, lambda document: document.update({field: value}))
    with pytest.raises(ConfigurationError, match=CHANGED) as refused:
        load_settings(full)
    assert "cidx-auth login" in str(refused.value)


def test_a_removed_field_is_refused(full: ProjectLayout) -> None:
    edit(full, lambda document: document.pop("store_url"))
    with pytest.raises(ConfigurationError, match=CHANGED):
        load_settings(full)


def test_fields_of_a_later_version_are_signed_too(project: Path) -> None:
    write_signed(project, {"server_url": "https://cidx.example.com", "later": [1, "x"]})
    loaded = load_settings(ProjectLayout(project))
    assert loaded is not None and loaded.server_url == "https://cidx.example.com"


@pytest.mark.parametrize("mac", [5, None, "", "00" * 32, "é" * 64, "\ud800"])
def test_a_missing_or_wrong_mac_is_refused(full: ProjectLayout, mac: Any) -> None:
    edit(full, lambda document: document.update({"mac": mac}))
    expected = "is not signed" if mac is None else CHANGED
    with pytest.raises(ConfigurationError, match=expected):
        load_settings(full)


def test_a_file_of_an_earlier_version_is_refused_until_login_signs_it(project: Path) -> None:
    layout = ProjectLayout(project)
    layout.directory.mkdir()
    old = {"server_url": "https://cidx.example.com", "username": "alice",
           "allowed_algorithms": None, "ca_bundle": None, "store_url": None}
    layout.settings.write_text(json.dumps(old))
    with pytest.raises(ConfigurationError, match=r"is not signed.*cidx-auth login"):
        load_settings(layout)
    save_settings(layout, ProjectSettings("https://cidx.example.com", "alice"))  # as login does
    assert load_settings(layout) == ProjectSettings("https://cidx.example.com", "alice")


def test_a_copy_in_another_project_does_not_verify(full: ProjectLayout, tmp_path: Path) -> None:
    other = ProjectLayout(tmp_path / "other")
    other.directory.mkdir(parents=True)
    shutil.copy(full.settings, other.settings)
    with pytest.raises(ConfigurationError, match="copied from another project"):
        load_settings(other)


def test_settings_signed_under_another_secret_do_not_verify(
    project: Path, tmp_path: Path
) -> None:
    layout = ProjectLayout(project)
    save_settings(layout, ProjectSettings("https://x.example"), UserSecret(tmp_path / "one"))
    assert load_settings(layout, UserSecret(tmp_path / "one")) is not None
    other = UserSecret(tmp_path / "two")
    other.value()  # it exists, and differs
    with pytest.raises(ConfigurationError, match="another per-user secret"):
        load_settings(layout, other)


def test_signed_settings_without_the_secret_are_refused_and_no_secret_is_made(
    project: Path, tmp_path: Path
) -> None:
    layout = ProjectLayout(project)
    secret = UserSecret(tmp_path / "config")
    save_settings(layout, ProjectSettings("https://x.example"), secret)
    secret.path.unlink()
    with pytest.raises(ConfigurationError, match=r"user.secret is missing.*cidx-auth login"):
        load_settings(layout, UserSecret(tmp_path / "config"))
    assert not secret.path.exists()


def test_the_ca_bundle_is_trusted_by_its_content(ca_file: Path, tmp_path: Path) -> None:
    pinned = ca_digest(ca_file)
    original = ca_file.read_bytes()
    assert read_ca_bundle(ca_file, pinned) == original
    context = ssl_context(HttpSettings("https://x.example", ca_bundle=ca_file,
                                       ca_bundle_sha256=pinned))
    assert len(context.get_ca_certs()) == 1  # loaded from the checked bytes, only those
    ca_file.write_bytes(original + b"\n")  # any change at all
    named = re.escape(str(ca_file))
    with pytest.raises(ConfigurationError, match=rf"{named} is not the file.*--ca-bundle"):
        read_ca_bundle(ca_file, pinned)
    with pytest.raises(ConfigurationError, match=rf"{named} is not the file.*--ca-bundle"):
        ssl_context(HttpSettings("https://x.example", ca_bundle=ca_file,
                                 ca_bundle_sha256=pinned))
    assert read_ca_bundle(ca_file, None) == original + b"\n"  # no pin: trusted by path
    with pytest.raises(ConfigurationError, match=r"cannot be read.*--ca-bundle"):
        read_ca_bundle(tmp_path / "gone.pem", pinned)


def test_a_changed_ca_bundle_stops_a_command_that_talks_to_the_server(
    full: ProjectLayout, ca_file: Path
) -> None:
    open_project(full.root).close()
    ensure_tls_material(ca_file.parent.parent / "attacker")  # another CA, same file name
    shutil.copy(ca_file.parent.parent / "attacker" / ca_file.name, ca_file)
    # Refused when the project opens: before a renewal could set a refresh token aside.
    with pytest.raises(ConfigurationError, match="is not the file `cidx-auth login` recorded"):
        open_project(full.root)
    open_project(full.root, offline=True).close()  # status and logout use no CA


def test_the_algorithm_pin_is_verified_before_it_is_signed(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RunningServer(ServerConfig(users={"alice": "pw-1234"})) as server:
        layout = ProjectLayout(project)
        for tampered in (False, True):
            save_settings(layout, ProjectSettings(server.url, "alice"))
            opened = open_project(project)
            opened.provider.login(Credentials("alice", "pw-1234"))
            if tampered:  # changed while the command ran: not signed over
                edit(layout, lambda document: document.update({"store_url": "redis://evil/0"}))
            before = layout.settings.read_bytes()
            with caplog.at_level(logging.WARNING, logger="cidx_auth"):
                opened.close()
            if tampered:
                assert layout.settings.read_bytes() == before
                assert CHANGED in caplog.text
            else:
                pinned = load_settings(layout)
                assert pinned is not None and pinned.allowed_algorithms == ("RS256",)
