"""Cold commands: whole processes, each against the floor a plain script pays.

Three ratios of medians, from runs that alternate in one loop (so a busy moment hits
every command alike), against the reference server on 127.0.0.1:

- ``cidx-auth token`` with a fresh stored token vs ``python -c "import cryptography.fernet"``
  (goal <= 1.5x);
- ``cidx-auth status`` vs the same floor (goal <= 2x);
- ``cidx-auth request GET /api/repos`` with a valid token vs a five-line script that
  imports httpx and sends the same GET with a static bearer (goal <= 1.25x).

A fourth line shows the floor under the first two: the floor plus what the core's value
objects and the stores need from the standard library (``dataclasses``, ``pathlib``,
``json``), with no line of cidx-auth.

The commands run from a regular (non-editable) install, as users have it: an editable
install adds its own import hook to every command. ``CIDX_BENCH_VENV`` names a venv that
holds one; by default a scratch venv gets this tree, installed without its dependencies,
which it takes from this interpreter's site-packages (a ``.pth`` line).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

RUNS = 21
TREE = Path(__file__).resolve().parent.parent

STDLIB = "cryptography.fernet, dataclasses, pathlib, json"
HTTPX_SCRIPT = """\
import os
import httpx
bearer = {"Authorization": "Bearer " + os.environ["BENCH_TOKEN"]}
answer = httpx.get(os.environ["BENCH_URL"] + "/api/repos", headers=bearer)
answer.raise_for_status()
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[1:4]} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def medians(commands: dict[str, list[str]], env: dict[str, str]) -> dict[str, float]:
    """Median milliseconds of each command, the runs alternating between them."""
    for argv in commands.values():  # warm the bytecode and page caches
        timed(argv, env)
    runs: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(RUNS):
        for name, argv in commands.items():
            runs[name].append(timed(argv, env))
    return {name: statistics.median(times) * 1000 for name, times in runs.items()}


def regular_install(root: Path) -> Path:
    """A scratch venv with this tree installed as a wheel would be (copied first, so
    the build leaves nothing in the tree); its dependencies are this venv's."""
    venv, source = root / "venv", root / "source"
    shutil.copytree(TREE, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "__pycache__", "tests"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", PURELIB], check=True,
                          capture_output=True, text=True).stdout.strip()
    Path(site, "bench-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(source)],
                   check=True)
    return venv


PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        venv = Path(os.environ.get("CIDX_BENCH_VENV") or regular_install(root))
        python, cli_path = str(venv / "bin" / "python"), str(venv / "bin" / "cidx-auth")
        print(f"== cold commands (regular install in {venv}) ==")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(CIDX_CONFIG_DIR=str(root / "config"))
        project = root / "project"
        project.mkdir()
        server = subprocess.Popen(
            [sys.executable, "-m", "refserver", "--port", "0", "--user", "bench:bench-pw",
             "--token-lifetime", "3600", "--stop-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip().removeprefix("serving on ")
            cli = [cli_path, "--project", str(project)]
            subprocess.run([*cli, "login", "--server", url, "--username", "bench",
                            "--password-stdin"], input="bench-pw\n", text=True, env=env,
                           check=True, capture_output=True)
            token = subprocess.run([*cli, "token"], env=env, check=True, capture_output=True,
                                   text=True).stdout.strip()
            env.update(BENCH_URL=url, BENCH_TOKEN=token)  # the script's, never argv
            ms = medians({
                "fernet": [python, "-c", "import cryptography.fernet"],
                "stdlib": [python, "-c", f"import {STDLIB}"],
                "token": [*cli, "token"],
                "status": [*cli, "status"],
                "httpx": [python, "-c", HTTPX_SCRIPT],
                "request": [*cli, "request", "GET", "/api/repos"],
            }, env)
        finally:
            server.terminate()
            server.wait(10)
    for name, floor, goal in (("token", "fernet", 1.5), ("status", "fernet", 2.0),
                              ("request", "httpx", 1.25)):
        ratio = ms[name] / ms[floor]
        print(f"cidx-auth {name:<8} {ms[name]:6.1f} ms vs {floor:<6} {ms[floor]:6.1f} ms: "
              f"{ratio:.2f}x (goal <= {goal}x){'' if ratio <= goal else '  OVER'}")
    print(f"floor: import {STDLIB}: {ms['stdlib']:.1f} ms, {ms['stdlib'] / ms['fernet']:.2f}x")


if __name__ == "__main__":
    main()
