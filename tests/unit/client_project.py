"""A CIDX client project for the unit tests of ``adapters.cidx_client_files``: the
values its files hold, and the helpers that write and read them."""

from __future__ import annotations

from pathlib import Path

from adapters.cidx_client_files import RemoteConfig, read_remote_config
from tests.cidx_client_format import write_client_project

URL = "https://cidx.example.com"
USER = "alice"
PASSWORD = "correct horse battery staple"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAwMH0.c2ln"


def project(root: Path, **options: object) -> Path:
    """Write the client's files under ``root`` (``options`` override the defaults);
    returns the ``.code-indexer`` directory."""
    settings: dict[str, object] = {"server_url": URL, "username": USER, "password": PASSWORD}
    write_client_project(root, **(settings | options))  # type: ignore[arg-type]
    return root / ".code-indexer"


def remote(directory: Path) -> RemoteConfig:
    found = read_remote_config(directory)
    assert found is not None
    return found
