"""kill -9 a writer at a random moment: the token is the old one or the new one, never garbage.

Each trial starts a real writer process that saves two known sessions in turn, under
the lock, as fast as it can, and SIGKILLs it 0-30 ms after it is ready, which lands
anywhere in a write: before the temp file, during the write or the fsync, between the
rename and the directory fsync. ``CIDX_STRESS_TRIALS`` sets the number of trials
(``make stress``: 3000); ``CIDX_STRESS_SEED`` replays a run.
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

TRIALS = int(os.environ.get("CIDX_STRESS_TRIALS", "200"))
SEED = int(os.environ.get("CIDX_STRESS_SEED", str(random.randrange(2**32))))
WORKERS = 4

# About 0.1 s of one CPU per trial; the suite's 300 s limit would stop `make stress`.
pytestmark = [pytest.mark.posix, pytest.mark.slow, pytest.mark.timeout(120 + TRIALS * 0.3)]


@dataclass(frozen=True)
class Trial:
    completed_writes: int
    temp_left: bool


def run_trial(number: int, root: Path, config_dir: Path, delay: float) -> Trial:
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
        time.sleep(delay)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    completed = writer.stdout.read().count(b".")
    writer.stdout.close()

    directory = project / ".code-indexer"
    temp_left = any(directory.glob(".token.tmp-*"))
    reader = token_store(project, config_dir)  # a new process: nothing cached
    loaded = reader.load()
    where = f"trial {number} (seed {SEED}, delay {delay * 1000:.1f} ms, {completed} writes)"
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


def test_a_killed_writer_never_leaves_a_damaged_token(tmp_path: Path, config_dir: Path) -> None:
    draw = random.Random(SEED)
    delays = [0.0 if draw.random() < 0.1 else draw.uniform(0.001, 0.03) for _ in range(TRIALS)]
    with ThreadPoolExecutor(WORKERS) as pool:
        trials = list(
            pool.map(lambda n: run_trial(n, tmp_path, config_dir, delays[n]), range(TRIALS))
        )
    assert len(trials) == TRIALS
    # The kills did land inside writes, not only between them.
    assert sum(trial.temp_left for trial in trials) > 0 or TRIALS < 50
    assert sum(trial.completed_writes > 0 for trial in trials) > 0 or TRIALS < 50
