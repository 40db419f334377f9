"""CLI conventions (issue 22, item 7): global options after the subcommand too, every
error one `cidx-auth: error: ...` line, `-q` for every command, Ctrl-C at the password
prompt, shell completion, and a failed login leaves no new `.code-indexer/` behind."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from refserver.harness import RunningServer
from tests.cidx_client_format import write_client_project
from tests.e2e.conftest import PASSWORD, USER, Cli, on_a_terminal

pytestmark = pytest.mark.slow


def bare(cli: Cli, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``cidx-auth ARGS`` exactly as given (no ``--project`` put first)."""
    return subprocess.run([sys.executable, "-m", "cidx_auth", *args], input=stdin,
                          capture_output=True, text=True, env=cli.env, timeout=120,
                          check=False)


def one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("cidx-auth: error: ") and done.stderr.count("\n") == 1, \
        done.stderr
    return done.stderr


def test_global_options_work_after_the_subcommand(cli: Cli, server: RunningServer) -> None:
    project = str(cli.project)
    login = bare(cli, "login", "--server", server.url, "--username", USER,
                 "--password-stdin", "--project", project, stdin=PASSWORD + "\n")
    assert login.returncode == 0, login.stderr
    assert (cli.project / ".code-indexer" / "auth.json").exists()  # where --project said
    for args in (("token", "--project", project), ("token", f"--project={project}"),
                 ("token", "-v", "--project", project), ("token", "-q", "--project", project)):
        done = bare(cli, *args)  # the cold path, and the full one for -v
        assert done.returncode == 0 and done.stdout.count(".") == 2, (args, done.stderr)
    verbose = bare(cli, "request", "GET", "/api/repos", "-vv", "--project", project)
    assert verbose.returncode == 0 and "DEBUG" in verbose.stderr
    for args in (("status", "--project", project), ("status", "-v", "--project", project)):
        done = bare(cli, *args)
        assert done.returncode == 0 and "logged in: yes" in done.stdout, (args, done.stderr)
    for args in (("status", "-q", "--project", project),
                 ("status", "--quiet", "-v", "--project", project)):
        done = bare(cli, *args)  # -q: the exit code is the answer
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), args


@pytest.mark.parametrize("args", [
    ("token", "--bogus"), ("--bogus", "status"), ("request", "FETCH", "/api/repos"),
    ("query",), ("nosuchcommand",), ("query", "x", "--limit", "many"),
    ("completion", "tcsh"), ("--project",),
])
def test_click_errors_have_the_one_line_form(cli: Cli, args: tuple[str, ...]) -> None:
    message = one_error_line(cli.run(*args), 2)
    assert "Usage:" not in message and "Try " not in message


def test_help_still_prints_help(cli: Cli) -> None:
    for args in (("--help",), ("token", "--help"), ("status", "-h")):
        done = cli.run(*args)
        assert done.returncode == 0 and done.stdout.startswith("Usage: "), args
    assert "--project" in cli.run("token", "--help").stdout  # accepted after the command


def test_quiet_prints_nothing_but_errors_and_results(cli: Cli, server: RunningServer) -> None:
    login = cli.run("-q", "login", "--server", server.url, "--username", USER,
                    "--password-stdin", stdin=PASSWORD + "\n")
    assert (login.returncode, login.stdout, login.stderr) == (0, "", "")
    again = cli.run("login", "-q", "--password-stdin", stdin=PASSWORD + "\n")  # bare
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    token = cli.run("token", "-q")
    assert token.returncode == 0 and token.stdout.count("\n") == 1 and token.stderr == ""
    for args in (("status",), ("status", "--json")):
        done = cli.run("-q", *args)
        assert done.returncode == 0 and done.stderr == ""
    assert cli.run("-q", "status").stdout == ""
    assert cli.run("-q", "status", "--json").stdout.startswith("{")  # asked for: printed
    body = cli.run("request", "GET", "/api/repos", "-q")
    assert body.returncode == 0 and body.stdout and body.stderr == ""
    out = cli.run("logout", "-q")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    refused = cli.run("token", "-q")  # errors still show
    one_error_line(refused, 3)


def test_quiet_approve_says_nothing(cli: Cli, server: RunningServer) -> None:
    write_client_project(cli.project, server_url=server.url, username=USER,
                         password=PASSWORD)
    done = cli.run("approve", "--yes", "-q")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_ctrl_c_at_the_password_prompt_exits_130_with_one_line(
    cli: Cli, server: RunningServer
) -> None:
    code, shown = on_a_terminal(
        cli, "login", "--server", server.url, "--username", USER,
        keys=b"\x03", after=b"Password: ")
    assert code == 130, shown
    assert "cidx-auth: interrupted" in shown
    assert "Aborted" not in shown and "Traceback" not in shown
    assert not (cli.project / ".code-indexer").exists()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_shells_script(cli: Cli, shell: str) -> None:
    done = cli.run("completion", shell)
    assert done.returncode == 0 and done.stderr == ""
    assert "_CIDX_AUTH_COMPLETE" in done.stdout and "cidx-auth" in done.stdout


def test_the_completion_script_completes_the_commands(cli: Cli) -> None:
    env = {**cli.env, "_CIDX_AUTH_COMPLETE": "bash_complete", "COMP_WORDS": "cidx-auth st",
           "COMP_CWORD": "1"}
    done = subprocess.run([sys.executable, "-m", "cidx_auth"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0 and "status" in done.stdout, done.stderr


@pytest.mark.parametrize("why", ["wrong password", "server down"])
def test_a_failed_login_leaves_no_new_code_indexer_behind(
    cli: Cli, server: RunningServer, tmp_path: Path, why: str
) -> None:
    url = server.url if why == "wrong password" else "http://127.0.0.1:9"
    password = "not-" + PASSWORD if why == "wrong password" else PASSWORD
    done = cli.run("login", "--server", url, "--username", USER, "--password-stdin",
                   stdin=password + "\n")
    assert done.returncode in (3, 4), done.stderr
    assert not (cli.project / ".code-indexer").exists()
    deep = Cli(tmp_path / "new" / "deeper", cli.env)  # --project that did not exist
    assert deep.run("login", "--server", url, "--username", USER, "--password-stdin",
                    stdin=password + "\n").returncode in (3, 4)
    assert not (tmp_path / "new").exists()
    # A .code-indexer that was there stays, with everything in it.
    kept = cli.project / ".code-indexer"
    kept.mkdir(mode=0o700)
    (kept / "notes.txt").write_text("mine")
    assert cli.run("login", "--server", url, "--username", USER, "--password-stdin",
                   stdin=password + "\n").returncode in (3, 4)
    assert (kept / "notes.txt").read_text() == "mine"


def test_a_failed_login_never_removes_a_lock_file_another_process_holds(cli: Cli) -> None:
    """Another process made the new `.code-indexer` its own while this login waited for
    the password, and holds the token lock: the failed login removes nothing (removing a
    held lock file would let a third process lock a new one beside it)."""
    import pty

    from adapters.file_lock import file_lock

    parent, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "cidx_auth", "--project", str(cli.project), "login",
         "--server", "http://127.0.0.1:9", "--username", USER],
        stdin=child, stdout=child, stderr=child, env=cli.env, start_new_session=True)
    os.close(child)
    shown = b""
    try:
        while b"Password" not in shown:  # the cue: it is past its checks, waiting
            ready, _, _ = select.select([parent], [], [], 60)
            assert ready, shown
            shown += os.read(parent, 1024)
        directory = cli.project / ".code-indexer"
        assert not directory.exists()  # this login has created nothing yet
        directory.mkdir(mode=0o700)
        with file_lock(directory / ".token.lock", 5, "the token lock"):
            os.write(parent, b"\n")  # an empty password: the login fails
            assert process.wait(timeout=60) == 2
            assert (directory / ".token.lock").exists()
        assert directory.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(parent)


def test_no_command_at_all_shows_the_help_whole(cli: Cli) -> None:
    done = subprocess.run([sys.executable, "-m", "cidx_auth"], capture_output=True,
                          text=True, env=cli.env, timeout=60, check=False)
    shown = done.stdout + done.stderr
    assert done.returncode in (0, 2)  # click 8.1 exits 0 here, later versions 2
    assert "cidx-auth: error" not in shown
    assert shown.splitlines()[0].startswith("Usage: cidx-auth")
    assert "Exit codes:" in shown and len(shown.splitlines()) > 10
