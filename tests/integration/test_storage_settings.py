"""The project layout, finding the project root, and ``auth.json``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from adapters.project_layout import (
    ProjectLayout,
    ProjectSettings,
    find_project_root,
    load_settings,
    save_settings,
)
from cidx_auth.domain.errors import ConfigurationError
from tests.settings_signing import write_signed

FIX = r"not valid .*run `cidx-auth login --server URL --username NAME`"


def test_the_layout_names_every_file(project: Path) -> None:
    layout = ProjectLayout(project)
    directory = project / ".code-indexer"
    assert layout.directory == directory
    assert [layout.token, layout.token_lock, layout.creds, layout.state, layout.state_lock] == [
        directory / name for name in (".token", ".token.lock", ".creds", ".state", ".state.lock")
    ]
    assert layout.settings == directory / "auth.json"


def test_the_project_root_is_the_nearest_ancestor_with_a_store(tmp_path: Path) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    deep = inner / "src" / "pkg"
    deep.mkdir(parents=True)
    (outer / ".code-indexer").mkdir()
    assert find_project_root(deep) == outer
    (inner / ".code-indexer").mkdir()
    assert find_project_root(deep) == inner
    assert find_project_root(inner) == inner


def test_without_a_store_anywhere_the_start_is_the_root(tmp_path: Path) -> None:
    start = tmp_path / "nowhere"
    start.mkdir()
    assert find_project_root(start) == start


@pytest.mark.posix
def test_the_plain_http_opt_in_is_recorded(project: Path) -> None:
    layout = ProjectLayout(project)
    settings = ProjectSettings("http://cidx.lan:8000", "alice", ("HS256",), plain_http=True)
    save_settings(layout, settings)
    assert json.loads(layout.settings.read_text())["plain_http"] is True
    assert load_settings(layout) == settings


def test_settings_round_trip_as_private_plain_json(project: Path) -> None:
    layout = ProjectLayout(project)
    settings = ProjectSettings(
        "https://cidx.example.com", "alice", ("RS256", "ES256"), "/etc/ca.pem", None,
        ca_bundle_sha256="ab" * 32,
    )
    assert load_settings(layout) is None
    save_settings(layout, settings)
    assert load_settings(layout) == settings
    assert stat.S_IMODE(os.stat(layout.settings).st_mode) == 0o600
    document = json.loads(layout.settings.read_text())
    mac = document.pop("mac")
    assert isinstance(mac, str) and len(mac) == 64
    assert document == {
        "server_url": "https://cidx.example.com",
        "username": "alice",
        "allowed_algorithms": ["RS256", "ES256"],
        "ca_bundle": "/etc/ca.pem",
        "ca_bundle_sha256": "ab" * 32,
        "store_url": None,
        "plain_http": False,
    }


@pytest.mark.parametrize("content", ["not json", "[]", "[" * 50_000])
def test_unreadable_settings_say_how_to_fix_them(project: Path, content: str) -> None:
    layout = ProjectLayout(project)
    layout.directory.mkdir()
    layout.settings.write_text(content)
    with pytest.raises(ConfigurationError, match=FIX):
        load_settings(layout)


@pytest.mark.parametrize(
    "document",
    [
        {"username": "alice"},
        {"server_url": "ftp://x"},
        {"server_url": "https://x", "allowed_algorithms": "RS256"},
        {"server_url": "https://x", "allowed_algorithms": []},
        {"server_url": "https://x", "allowed_algorithms": ["none"]},
        {"server_url": "https://x", "ca_bundle": 7},
        {"server_url": "https://x", "ca_bundle": "/etc/ca.pem"},  # no pin of its content
    ],
)
def test_bad_settings_say_how_to_fix_them(project: Path, document: dict[str, Any]) -> None:
    write_signed(project, document)  # signed, so what is refused is the content
    with pytest.raises(ConfigurationError, match=FIX):
        load_settings(ProjectLayout(project))


def test_settings_are_checked_when_made() -> None:
    with pytest.raises(ConfigurationError, match="https://"):
        ProjectSettings("cidx.example.com")
    with pytest.raises(ConfigurationError, match='"none"'):
        ProjectSettings("https://x", allowed_algorithms=("RS256", "None"))
