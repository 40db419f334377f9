"""No secret in a core dump (issue 20, item 7): the CLI turns core dumps off for itself.

The real CLI waits at its password prompt (a pseudo-terminal, as a user types it) with
core dumps enabled by its parent, as a developer's shell may have them. Then: its own
limit reads 0 in ``/proc/<pid>/limits``; and with the limit raised again from outside,
a crash still dumps nothing (``PR_SET_DUMPABLE`` 0), as the kernel itself reports in
the wait status (``WCOREDUMP``), whatever ``core_pattern`` says (a file or a pipe).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")

UNLIMITED = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


def core_dumps_on() -> None:
    """In the child before exec: core dumps enabled, as `ulimit -c unlimited` does."""
    resource.setrlimit(resource.RLIMIT_CORE, UNLIMITED)


def crash(pid: int) -> int:
    """SIGABRT (whose default action dumps core) and the raw wait status."""
    os.kill(pid, signal.SIGABRT)
    return os.waitpid(pid, 0)[1]


@pytest.fixture
def dumps_possible(tmp_path: Path) -> None:
    """Skip unless a process here with core dumps on really dumps core when it crashes."""
    if resource.getrlimit(resource.RLIMIT_CORE)[1] != resource.RLIM_INFINITY:
        pytest.skip("core dumps cannot be enabled here (a hard limit)")
    scratch = tmp_path / "control"
    scratch.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"], cwd=scratch, preexec_fn=core_dumps_on)
    status = crash(sleeper.pid)
    sleeper.returncode = -signal.SIGABRT  # reaped above
    if not (os.WIFSIGNALED(status) and os.WCOREDUMP(status)):
        pytest.skip("this machine writes no core dumps (core_pattern, a container)")


def test_the_cli_at_its_password_prompt_can_never_dump_core(
    tmp_path: Path, dumps_possible: None,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    env["CIDX_CONFIG_DIR"] = str(tmp_path / "config")
    primary, secondary = os.openpty()  # stdin is a terminal: the CLI prompts
    try:
        cli = subprocess.Popen(
            [sys.executable, "-m", "cidx_auth", "--project", str(project), "login",
             "--server", "http://127.0.0.1:9", "--username", "alice"],
            stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=project,
            env=env, preexec_fn=core_dumps_on,
        )
        try:
            assert cli.stderr is not None
            assert cli.stderr.read(len("Password: ")) == b"Password: "  # the cue: it waits
            limits = Path(f"/proc/{cli.pid}/limits").read_text()
            core = next(line for line in limits.splitlines() if "core file size" in line)
            assert core.split()[-3:] == ["0", "unlimited", "bytes"], core  # soft 0
            # Raised again from outside: only "not dumpable" is left to keep the core out.
            resource.prlimit(cli.pid, resource.RLIMIT_CORE, UNLIMITED)
            status = crash(cli.pid)
            cli.returncode = -signal.SIGABRT  # reaped above
        finally:
            if cli.returncode is None:
                cli.kill()
                cli.wait()
    finally:
        os.close(primary)
        os.close(secondary)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGABRT
    assert not os.WCOREDUMP(status)
    assert [p.name for p in project.iterdir() if p.name.startswith("core")] == []


REPORT = """
import json, resource, sys
sys.argv = ["cidx-auth", *json.loads(sys.argv[1])]
from cidx_auth.app.entry import main
try:
    main()
finally:
    print(json.dumps([resource.getrlimit(resource.RLIMIT_CORE), "ctypes" in sys.modules]),
          file=sys.stderr)
"""


def test_a_cold_command_takes_the_limit_without_loading_ctypes(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIDX_", "COVERAGE_"))}
    env["CIDX_CONFIG_DIR"] = str(tmp_path / "config")
    done = subprocess.run(
        [sys.executable, "-c", REPORT, json.dumps(["--project", str(tmp_path / "project"),
                                                   "status", "--json"])],
        env=env, capture_output=True, text=True, timeout=60, check=False,
        preexec_fn=core_dumps_on,
    )
    assert done.returncode == 3, done.stderr  # not logged in: status's answer (exit 3)
    assert json.loads(done.stderr.splitlines()[-1]) == [[0, resource.RLIM_INFINITY], False]
