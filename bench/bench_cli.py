"""CLI figure: ``cidx-auth token`` with a valid stored token, in a fresh process.

Compared, interleaved in the same run, with ``python -c "import cryptography.fernet"``:
the floor any Fernet user pays. Goal: <= 2x. Bytecode is cached for both (under a
temporary PYTHONPYCACHEPREFIX), as it is for an installed package.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 21
BIN = Path(sys.executable).parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    print("== cli ==")
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(CIDX_CONFIG_DIR=str(root / "config"), PYTHONPYCACHEPREFIX=str(root / "pyc"))
        project = root / "project"
        project.mkdir()
        server = subprocess.Popen(
            [sys.executable, "-m", "refserver", "--port", "0", "--user", "bench:bench-pw",
             "--stop-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip().removeprefix("serving on ")
            cli = [str(BIN / "cidx-auth"), "--project", str(project)]
            subprocess.run([*cli, "login", "--server", url, "--username", "bench",
                            "--password-stdin"], input="bench-pw\n", text=True, env=env,
                           check=True, capture_output=True)
            floor = [sys.executable, "-c", "import cryptography.fernet"]
            token = [*cli, "token"]
            for _ in range(3):  # warm the bytecode cache and the page cache
                timed(floor, env)
                timed(token, env)
            base, ours = [], []
            for _ in range(RUNS):
                base.append(timed(floor, env))
                ours.append(timed(token, env))
        finally:
            server.terminate()
            server.wait(10)
    b, o = statistics.median(base) * 1000, statistics.median(ours) * 1000
    print(f"cidx-auth token (fresh process, valid stored token): median {o:.1f} ms; "
          f"python -c 'import cryptography.fernet': {b:.1f} ms; ratio {o / b:.2f}x (goal <= 2x)")


if __name__ == "__main__":
    main()
