"""Directories and secrets another user controls, as users meet them (issue 15, items 1,
2 and 8): the CLI runs as a real process, the victim as a real second user (uid 2002,
through ``setpriv``), the attacker's files owned by a third uid (2003). Every refusal is
exit 5 with a message that names the path and says what to do, and leaves the refused
directory or file exactly as it was.

We run as root; root-owned files count as the user's own (decisions.md), so "another
user's" always means a file chowned to 2002 or 2003."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

import adapters
import cidx_auth
import refserver
from adapters.extras import EXTRAS
from refserver.harness import RunningServer
from tests.e2e.conftest import PASSWORD, USER, Cli
from tests.e2e.other_user import Copy, Unsupported, can_run_programs, python_for_other_users

VICTIM, ATTACKER = 2002, 2003

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                       reason="needs root, to act as and chown to other users"),
]

Snapshot = dict[str, tuple[int, int, bytes | str]]


def snapshot(directory: Path) -> Snapshot:
    """Every entry under ``directory``: mode, owner, and content (or a link's target)."""
    found: Snapshot = {}
    for path in sorted(directory.rglob("*")):
        status = os.lstat(path)
        content: bytes | str = b""
        if stat.S_ISLNK(status.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(status.st_mode):
            content = path.read_bytes()
        found[str(path.relative_to(directory))] = (status.st_mode, status.st_uid, content)
    return found


def owned_dir(path: Path, bits: int, uid: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    os.chmod(path, bits)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def cidx(
    *args: str, env: dict[str, str], cwd: Path | None = None, victim: Copy | None = None,
    umask: int = -1, password: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``cidx-auth ARGS`` in a fresh process; as the victim (uid 2002) if given
    ``victim``, the copy of this Python they can start."""
    if victim is not None:
        python, env = victim.as_user(VICTIM), {**env, **victim.env}
    else:
        python = [sys.executable]
    return subprocess.run(
        [*python, "-m", "cidx_auth", *args], cwd=cwd, env=env, umask=umask,
        input=PASSWORD + "\n" if password else None, capture_output=True, text=True,
        timeout=120, check=False,
    )


def login_args(server: RunningServer) -> tuple[str, ...]:
    return ("login", "--server", server.url, "--username", USER, "--password-stdin")


def refused(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 5, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


# --- a shared machine: a victim below an attacker's .code-indexer ----------------------


@pytest.fixture(scope="module")
def victim_python() -> Iterator[Copy]:
    """This Python and its packages, copied where the victim can start them (pyenv's
    interpreters are in root's 0700 home: ``other_user.py``), once for the module."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed: cannot run a process as another user")
    if not can_run_programs(Path("/tmp")):
        pytest.skip("/tmp is mounted noexec: no copy of Python can run from there")
    packages = [Path(str(package.__file__)).parent for package in (cidx_auth, adapters, refserver)]
    with ExitStack() as made:
        try:
            copy = made.enter_context(python_for_other_users("cidx-auth", EXTRAS, packages))
        except Unsupported as error:
            pytest.skip(f"{sys.executable} cannot be copied for another user: {error}")
        # The victim runs this very Python and the project under test, nothing else found
        # on the way (as uid 2002 the original fell back to Debian's libpython3.11).
        probe = subprocess.run(
            [*copy.as_user(VICTIM), "-c", "import sys, cidx_auth; print(sys.version); "
             "print(cidx_auth.__file__)"], cwd="/", env=copy.env, capture_output=True, text=True,
            timeout=60, check=False)
        assert probe.returncode == 0, probe.stderr
        version, source = probe.stdout.splitlines()
        assert version == sys.version and source.startswith(f"{copy.prefix}/"), probe.stdout
        yield copy


@pytest.fixture
def machine() -> Iterator[Path]:
    """A directory every user can reach (pytest's own temp directory is root's 0700)."""
    base = Path(tempfile.mkdtemp(prefix="cidx-trust-", dir="/tmp"))
    os.chmod(base, 0o755)  # noqa: S103  (the victim, another uid, must reach it)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def test_a_victim_below_a_planted_code_indexer_is_refused_and_writes_nothing_there(
    machine: Path, victim_python: Copy, server: RunningServer
) -> None:
    # The attacker's trap: /shared/.code-indexer, 0777, with settings of their choice.
    planted = owned_dir(machine / ".code-indexer", 0o777, ATTACKER)
    (planted / "auth.json").write_text('{"server_url": "https://attacker.test"}')
    os.chown(planted / "auth.json", ATTACKER, ATTACKER)
    before = snapshot(planted)
    home = owned_dir(machine / "home", 0o755, VICTIM)
    clone = owned_dir(machine / "clone", 0o755, VICTIM)
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}

    for args in [login_args(server), ("token",), ("status",), ("logout", "--forget")]:
        done = cidx(*args, env=env, cwd=clone, victim=victim_python,
                    password=args[0] == "login")
        refused(done, f"the project directory {planted} is owned by another user (uid "
                      f"{ATTACKER})", "--project DIR")
    assert snapshot(planted) == before
    assert not (home / ".config").exists()  # not even the secret was made

    # The way out the message names: the victim's own project directory.
    done = cidx("--project", str(clone), *login_args(server), env=env, cwd=clone,
                victim=victim_python, password=True)
    assert done.returncode == 0, done.stderr
    assert f"stored in {clone / '.code-indexer'}" in done.stdout
    assert os.stat(clone / ".code-indexer").st_uid == VICTIM
    token = cidx("token", env=env, cwd=clone, victim=victim_python)  # found first, in the clone
    assert token.returncode == 0 and token.stdout.count(".") == 2, token.stderr
    assert snapshot(planted) == before


def test_what_the_victim_runs_only_root_can_change(victim_python: Copy) -> None:
    entries = [victim_python.prefix, *victim_python.prefix.rglob("*")]
    assert len(entries) > 1000  # the interpreter, its standard library, the project
    for path in entries:
        status = os.lstat(path)
        assert status.st_uid == 0 and not status.st_mode & 0o6022, path  # no set-user-ID
        assert stat.S_ISDIR(status.st_mode) or stat.S_ISREG(status.st_mode), path


# --- one's own project directory ---------------------------------------------------


def test_a_project_directory_every_user_can_write_is_refused_not_fixed(
    cli: Cli, server: RunningServer
) -> None:
    store = owned_dir(cli.project / ".code-indexer", 0o777)
    done = cli.login(server.url)
    refused(done, f"{store} can be written by every user (mode 777)",
            f"run `chmod go-w {store}`")
    assert mode(store) == 0o777 and os.listdir(store) == []


def test_a_group_writable_project_directory_is_tightened_with_a_warning(
    cli: Cli, server: RunningServer
) -> None:
    store = owned_dir(cli.project / ".code-indexer", 0o770)
    done = cli.login(server.url)
    assert done.returncode == 0, done.stderr
    assert f"{store} had mode 770; setting it to 700" in done.stderr
    assert mode(store) == 0o700


def test_a_symlinked_project_directory_is_refused_by_every_command(
    cli: Cli, server: RunningServer, tmp_path: Path
) -> None:
    other = Cli(tmp_path / "other", cli.env)  # a project with a real login to steal
    other.project.mkdir()
    assert other.login(server.url).returncode == 0
    target = other.project / ".code-indexer"
    before = snapshot(target)
    link = cli.project / ".code-indexer"
    link.symlink_to(target)
    for args in [("token",), ("status",), ("status", "--json"), ("logout", "--forget")]:
        refused(cli.run(*args), f"the project directory {link} is a symbolic link")
    refused(cli.login(server.url), "is a symbolic link", "Replace the link")
    assert snapshot(target) == before  # no token set aside, no credentials forgotten
    assert mode(target) == 0o700


def test_a_project_directory_linked_to_home_never_chmods_it(
    cli: Cli, server: RunningServer, tmp_path: Path
) -> None:
    home = owned_dir(tmp_path / "home", 0o755)
    (cli.project / ".code-indexer").symlink_to(home)
    refused(cli.login(server.url), "is a symbolic link")
    assert mode(home) == 0o755 and os.listdir(home) == []


# --- the per-user secret -------------------------------------------------------------


@pytest.mark.parametrize(("target", "bits", "uid", "problem"), [
    ("secret", 0o600, ATTACKER, f"is owned by another user (uid {ATTACKER})"),
    ("secret", 0o620, 0, "can be written by its group (mode 620)"),
    ("secret", 0o606, 0, "can be written by every user (mode 606)"),
    ("directory", 0o770, 0, "which can be written by its group (mode 770)"),
    ("directory", 0o777, 0, "can be written by every user (mode 777)"),
    ("directory", 0o700, ATTACKER, "is owned by another user"),
], ids=["secret-theirs", "secret-g+w", "secret-o+w", "dir-g+w", "dir-o+w", "dir-theirs"])
def test_a_secret_another_user_could_have_chosen_stops_the_login(
    cli: Cli, server: RunningServer, target: str, bits: int, uid: int, problem: str
) -> None:
    config = owned_dir(Path(cli.env["CIDX_CONFIG_DIR"]), 0o700)
    secret = config / "user.secret"
    secret.write_bytes(os.urandom(32))  # one they know
    os.chmod(secret, 0o600)
    chosen = secret if target == "secret" else config
    os.chown(chosen, uid, uid)
    os.chmod(chosen, bits)
    before = snapshot(config)
    refused(cli.login(server.url), "the per-user secret", problem)
    assert snapshot(config) == before and mode(chosen) == bits
    assert not (cli.project / ".code-indexer" / ".creds").exists()  # the password stays out


def test_a_fresh_login_under_umask_000_keeps_every_directory_private(
    cli: Cli, server: RunningServer, tmp_path: Path
) -> None:
    home = owned_dir(tmp_path / "home", 0o755)
    env = {k: v for k, v in cli.env.items() if k not in ("CIDX_CONFIG_DIR", "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)
    done = cidx("--project", str(cli.project), *login_args(server), env=env, umask=0,
                password=True)
    assert done.returncode == 0, done.stderr
    for directory in (home / ".config", home / ".config" / "cidx", cli.project / ".code-indexer"):
        assert mode(directory) == 0o700, directory
    assert mode(home / ".config" / "cidx" / "user.secret") == 0o600
    assert cidx("--project", str(cli.project), "token", env=env).returncode == 0


def test_a_cidx_secret_file_owned_by_another_user_is_refused(
    cli: Cli, server: RunningServer, tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet.secret"
    fleet.write_bytes(os.urandom(32))
    os.chown(fleet, ATTACKER, ATTACKER)
    os.chmod(fleet, 0o600)
    done = cli.run(*login_args(server), stdin=PASSWORD + "\n",
                   env_extra={"CIDX_SECRET_FILE": str(fleet)})
    refused(done, f"CIDX_SECRET_FILE {fleet} is owned by another user (uid {ATTACKER})",
            "unset CIDX_SECRET_FILE")
