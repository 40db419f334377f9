"""kill -9 a writer at a random moment: the token is the old one or the new one, never garbage.

Each trial starts a real writer process that saves two known sessions in turn, under
the lock, as fast as it can, and SIGKILLs it 0-30 ms after it is ready, which lands
anywhere in a write: before the temp file, during the write or the fsync, between the
rename and the directory fsync. Two trials do not leave it to chance: the first is killed
after a completed write, the second while a temp file of its write exists (it is stopped
when one is seen, and killed if the temp file is still there once it has stopped).
``CIDX_STRESS_TRIALS`` sets the number of trials (``make stress``: 3000; at least 2);
``CIDX_STRESS_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.storage_helpers import HELPERS, known_sessions, token_store

TRIALS = max(2, int(os.environ.get("CIDX_STRESS_TRIALS", "200")))
SEED = int(os.environ.get("CIDX_STRESS_SEED", str(random.randrange(2**32))))
WORKERS = 4

# About 0.1 s of one CPU per trial; the suite's 300 s limit would stop `make stress`.
pytestmark = [pytest.mark.posix, pytest.mark.slow, pytest.mark.timeout(120 + TRIALS * 0.3)]


@dataclass(frozen=True)
class Trial:
    completed_writes: int
    temp_left: bool


AFTER_A_WRITE, MID_WRITE = "after a write", "mid-write"
"""The moments of the first two trials; the others are killed after a random delay."""


def stop_mid_write(writer: subprocess.Popen[bytes], directory: Path) -> None:
    """Leave ``writer`` stopped while a temp file of its current write exists."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(directory.glob(".token.tmp-*")):
            os.kill(writer.pid, signal.SIGSTOP)
            os.waitpid(writer.pid, os.WUNTRACED)  # returns once it has stopped
            if any(directory.glob(".token.tmp-*")):
                return
            os.kill(writer.pid, signal.SIGCONT)  # the write ended first: try the next one
    raise AssertionError("no write of the writer was caught with its temp file")


def run_trial(number: int, root: Path, config_dir: Path, delay: float | str) -> Trial:
    project = root / f"trial-{number}"
    project.mkdir()
    old_file = number % 2 == 1  # half the trials start with a token already stored
    if old_file:
        store = token_store(project, config_dir)
        with store.lock(5):
            store.save(known_sessions()[0])
    writer = subprocess.Popen(
        [sys.executable, str(HELPERS), "writer", str(project), str(config_dir)],
        stdout=subprocess.PIPE,
    )
    assert writer.stdout is not None
    try:
        assert writer.stdout.read(1) == b"R", "the writer failed to start"
        if delay == AFTER_A_WRITE:
            assert writer.stdout.read(1) == b".", "the writer failed to write"
        elif delay == MID_WRITE:
            stop_mid_write(writer, project / ".code-indexer")
        else:
            assert isinstance(delay, float)
            time.sleep(delay)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    completed = writer.stdout.read().count(b".") + (delay == AFTER_A_WRITE)
    writer.stdout.close()

    directory = project / ".code-indexer"
    temp_left = any(directory.glob(".token.tmp-*"))
    reader = token_store(project, config_dir)  # a new process: nothing cached
    loaded = reader.load()
    moment = delay if isinstance(delay, str) else f"delay {delay * 1000:.1f} ms"
    where = f"trial {number} (seed {SEED}, {moment}, {completed} writes)"
    assert not list(directory.glob(".token.corrupt-*")), f"garbage left by {where}"
    if loaded is None:
        assert completed == 0 and not old_file, f"token lost in {where}"
        assert not reader.path.exists()
    else:
        assert loaded in known_sessions(), where

    with reader.lock(5):
        reader.save(known_sessions()[1])
    assert not list(directory.glob(".token.tmp-*")), f"temp file survived a write: {where}"
    return Trial(completed, temp_left)


@pytest.mark.crowd
def test_a_killed_writer_never_leaves_a_damaged_token(tmp_path: Path, config_dir: Path) -> None:
    draw = random.Random(SEED)
    delays: list[float | str] = [AFTER_A_WRITE, MID_WRITE]
    delays += [0.0 if draw.random() < 0.1 else draw.uniform(0.001, 0.03)
               for _ in range(TRIALS - 2)]
    with ThreadPoolExecutor(WORKERS) as pool:
        trials = list(
            pool.map(lambda n: run_trial(n, tmp_path, config_dir, delays[n]), range(TRIALS))
        )
    assert len(trials) == TRIALS
