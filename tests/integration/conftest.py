"""Fixtures for the storage and process tests: real files in a temp directory."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.events import CountingSink
from adapters.memory import FakeClock, ScriptedGateway
from cidx_auth.app.container import Container, build_project
from cidx_auth.domain.rules import Rules
from tests.integration.immutable_files import Immutable
from tests.integration.storage_helpers import ALICE, SERVER_URL


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("posix") and os.name != "posix":
        pytest.skip("needs POSIX file semantics")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch the real user's ``~/.config/cidx``."""
    monkeypatch.setenv("CIDX_CONFIG_DIR", str(tmp_path / "default-config"))


class Files:
    """A provider over real files with a scripted server on a fake clock."""

    def __init__(self, project: Path, config_dir: Path, rules: Rules | None = None) -> None:
        self.clock = FakeClock(time.time())
        self.gateway = ScriptedGateway(self.clock, {ALICE.username: ALICE.password})
        self.events = CountingSink()
        self.container: Container = build_project(
            project, SERVER_URL, self.gateway,
            clock=self.clock, extra_sinks=(self.events,), rules=rules, config_dir=config_dir,
        )
        self.provider = self.container.token_provider()
        self.store = self.container.token_store()
        self.credentials = self.container.credential_store()
        self.state = self.container.state_store()


@pytest.fixture
def files(project: Path, config_dir: Path) -> Files:
    return Files(project, config_dir)


@pytest.fixture
def immutable() -> Iterator[Immutable]:
    """Files made immutable with ``chattr +i`` for the test, always made mutable again."""
    bits = Immutable()
    try:
        yield bits
    finally:
        bits.release()
