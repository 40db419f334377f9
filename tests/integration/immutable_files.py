"""``chattr +i``: the one way to make a file unwritable for root (who ignores mode bits).

Each path is checked to really refuse writes (else the test is skipped with the reason),
and every bit set is cleared again by :meth:`Immutable.release`, which the ``immutable``
fixture calls whatever the test did.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


class Immutable:
    """``chattr +i`` on paths, checked to really refuse writes, always undone."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def set(self, *paths: Path) -> None:
        if shutil.which("chattr") is None:
            pytest.skip("chattr is not installed: cannot make files immutable")
        for path in paths:
            done = subprocess.run(
                ["chattr", "+i", str(path)], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                self.release()
                pytest.skip(f"chattr +i {path.name} failed: {done.stderr.strip()}")
            self.paths.append(path)
        for path in paths:
            self._check_unwritable(path)

    def release(self) -> None:
        while self.paths:
            subprocess.run(["chattr", "-i", str(self.paths.pop())], check=True)

    def _check_unwritable(self, path: Path) -> None:
        probe = path / "write-probe" if path.is_dir() else path
        try:
            with probe.open("ab"):
                pass
        except OSError:
            return
        self.release()
        pytest.skip(f"{probe} is still writable under chattr +i on this filesystem")
