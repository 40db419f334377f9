"""Every Python example of ``docs/api.md``, and README's "As a library" examples, runs as
written: each block alone, in a fresh interpreter, in a project logged in to the
reference server on loopback (the FakeCidx example needs none, and ignores it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import Cli, server_with

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(), re.DOTALL)


API_BLOCKS = python_blocks("docs/api.md")
# README's FakeCidx example is a pytest test, run as one by tests/refserver/test_fake_cidx.py.
README_BLOCKS = [block for block in python_blocks("README.md")
                 if "refserver.testing" not in block]


@pytest.fixture(scope="module")
def running() -> Iterator[RunningServer]:
    with server_with() as server:
        yield server


@pytest.fixture(scope="module")
def logged_in(running: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A project logged in once, with the ``src/app`` the first example opens from."""
    base = tmp_path_factory.mktemp("api-docs")
    (base / "project" / "src" / "app").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    cli = Cli(base / "project", {**env, "CIDX_CONFIG_DIR": str(base / "config")})
    done = cli.login(running.url)
    assert done.returncode == 0, done.stderr
    return cli


def test_the_documents_have_the_examples_this_runs() -> None:
    assert len(API_BLOCKS) == 8
    assert len(README_BLOCKS) == 2


def test_the_examples_guard_a_missing_score_and_escape_server_text() -> None:
    """A hit's score may be None (``:.2f`` of it raises TypeError), and a hit's text is the
    server's, which could hold terminal escapes: the examples show how to print both."""
    init = (ROOT / "cidx_auth" / "__init__.py").read_text()
    for block in [*API_BLOCKS, *README_BLOCKS, init]:
        if "similarity_score:.2f" in block:
            assert "similarity_score is None" in block, block
        assert not re.search(r"\{hit\.(code_snippet|location|file_path)\}", block), block


@pytest.mark.parametrize("block", [*API_BLOCKS, *README_BLOCKS],
                         ids=[*(f"api-{n}" for n in range(1, len(API_BLOCKS) + 1)),
                              *(f"readme-{n}" for n in range(1, len(README_BLOCKS) + 1))])
def test_the_example_runs_as_written(block: str, logged_in: Cli, tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(block)
    done = subprocess.run([sys.executable, str(example)], cwd=logged_in.project,
                          env=logged_in.env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
