"""What the CLI prints, what `status` leaves on disk, what `logout` leaves behind
(issue 15, items 6, 7, 8, 9, 10): the CLI in real processes, against a loopback server
that answers what a hostile one would."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adapters.fernet_cipher import project_cipher
from adapters.file_io import read_regular, write_private
from adapters.project_layout import CIDX_CLIENT_MARK, ProjectLayout, load_settings
from adapters.secret_sources import secret_source
from adapters.session_codec import decode_session, encode_session
from cidx_auth.domain.token import AccessToken
from tests.e2e.conftest import Cli
from tests.integration.hostile_server import HostileServer, grant, jwt, respond
from tests.integration.redis_support import RedisServer, redis_binary

pytestmark = pytest.mark.slow

HOSTILE = "\x1b]8;;https://evil\x07click\x1b]8;;\x07\x1b[2J\r\x9b31m\u202eexe.txt\x7f"
TERMINAL_BYTES = "\x1b\x07\r\x9b\u202e\x7f"
RESULTS = {"total_results": 3, "results": [
    {"file_path": "pages/[id].tsx", "line_number": 3, "code_snippet": "export default [/x]",
     "similarity_score": 0.91},
    {"file_path": "[link=https://evil]src/auth.py[/link]", "line_number": 7,
     "code_snippet": HOSTILE, "similarity_score": 0.5},
    {"file_path": "[/x]", "line_number": 1, "code_snippet": "[bold]", "similarity_score": 0.1},
]}


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    routes = {
        "/auth/login": grant,
        "/api/auth/refresh": grant,
        "/api/query": respond(200, json.dumps(RESULTS)),
        "/api/string": respond(200, json.dumps(HOSTILE + "\nsecond line")),
        "/api/refused": respond(400, json.dumps({"detail": f"no such repo {HOSTILE}"})),
    }
    with HostileServer(routes) as server:
        yield server


def logged_in(cli: Cli, url: str, *extra: str) -> Cli:
    done = cli.login(url, *extra)
    assert done.returncode == 0, done.stderr
    return cli


def test_query_results_print_as_the_text_the_server_sent(cli: Cli, hostile: HostileServer) -> None:
    logged_in(cli, hostile.url)
    done = cli.run("query", "auth", "--repo", "backend", env_extra={"COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    for literal in ("pages/[id].tsx:3", "export default [/x]",
                    "[link=https://evil]src/auth.py[/link]:7", "[/x]:1", "[bold]"):
        assert literal in done.stdout, done.stdout
    assert "]8;;https://evilclick" in done.stdout  # the text stays, the escapes go
    assert not any(char in done.stdout + done.stderr for char in TERMINAL_BYTES)


LONG_PATH = "frontend/src/app/(dashboard)/settings/profile/pages/[id].tsx"  # 60 characters
LONG_SNIPPET = "export default function Page() {\n\treturn\t<Profile />;\n}\n" + "word " * 40


def test_query_into_a_pipe_prints_one_whole_line_per_hit(tmp_path: Path) -> None:
    answer = {"total_results": 2, "results": [
        {"file_path": LONG_PATH, "line_number": 42, "code_snippet": LONG_SNIPPET,
         "similarity_score": 0.87345, "repository_alias": "frontend"},
        {"file_path": "pages/[id].tsx", "line_number": 3, "code_snippet": "export default [/x]",
         "similarity_score": 0.5, "repository_alias": "frontend"}]}
    routes = {"/auth/login": grant, "/api/auth/refresh": grant,
              "/api/query": respond(200, json.dumps(answer))}
    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    cli = Cli(project, {**env, "CIDX_CONFIG_DIR": str(tmp_path / "config")})
    with HostileServer(routes) as server:
        logged_in(cli, server.url)
        done = cli.run("query", "profile page", "--repo", "frontend",
                       env_extra={"COLUMNS": "80"})  # what was seen: a pipe at 80 columns
    assert done.returncode == 0, done.stderr
    assert len(LONG_PATH) == 60
    assert [line.split("\t") for line in done.stdout.splitlines()] == [
        ["0.873", "frontend", f"{LONG_PATH}:42", " ".join(LONG_SNIPPET.split())],
        ["0.500", "frontend", "pages/[id].tsx:3", "export default [/x]"]]


def test_request_and_error_details_carry_no_control_characters(
    cli: Cli, hostile: HostileServer
) -> None:
    logged_in(cli, hostile.url)
    shown = cli.run("request", "GET", "/api/string")
    assert shown.returncode == 0, shown.stderr
    assert not any(char in shown.stdout for char in TERMINAL_BYTES)
    assert shown.stdout.splitlines()[-1] == "second line"  # a body's own lines are kept
    refused = cli.run("request", "GET", "/api/refused")
    assert refused.returncode == 6 and "Traceback" not in refused.stderr
    assert "answered 400" in refused.stderr and "https://evil" in refused.stderr
    assert not any(char in refused.stderr for char in TERMINAL_BYTES)
    assert refused.stderr.count("\n") == 1  # one line, whatever the detail held


def test_a_token_with_a_newline_is_refused_at_login_and_never_printed(cli: Cli) -> None:
    good = jwt()
    bent = good + "\nX-Injected: yes"
    answer = {"access_token": bent, "refresh_token": "r", "expires_in": 600}
    with HostileServer({"/auth/login": respond(200, json.dumps(answer))}) as server:
        done = cli.login(server.url)
    assert done.returncode == 3, done.stderr
    assert "characters a JWT cannot" in done.stderr and "X-Injected" not in done.stderr
    assert not cli.token_file.exists()


def plant_token(cli: Cli, raw: str) -> None:
    """Rewrite the stored session around ``raw`` through the project's own codec."""
    layout = ProjectLayout(cli.project)
    secret = secret_source(Path(cli.env["CIDX_CONFIG_DIR"]), cli.env)
    settings = load_settings(layout, secret)
    assert settings is not None
    cipher = project_cipher(cli.project, settings.server_url, secret)
    found = read_regular(layout.token)
    assert found is not None
    session = decode_session(found[0], cipher)
    token = session.token
    planted = AccessToken(raw, token.alg, token.exp, token.iat, token.jti, token.username)
    blob = encode_session(replace(session, token=planted), cipher, time.time())
    write_private(layout.token, blob, sweep_young=False, now=time.time())


def test_a_stored_token_with_a_newline_is_never_printed(cli: Cli, hostile: HostileServer) -> None:
    logged_in(cli, hostile.url)
    plant_token(cli, jwt() + "\nX-Injected: yes")
    done = cli.run("token")
    assert done.returncode == 0, done.stderr
    assert "X-Injected" not in done.stdout and done.stdout.count("\n") == 1
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+\n", done.stdout)
    assert list(cli.token_file.parent.glob(".token.corrupt-*"))  # set aside, logged in again


# ---- status changes nothing ----------------------------------------------------------


def snapshot(*roots: Path) -> dict[str, Any]:
    """Every name under ``roots`` with its type, mode, mtime and content hash."""
    seen: dict[str, Any] = {}
    for root in roots:
        if not root.exists():
            seen[str(root)] = None
            continue
        for path in [root, *sorted(root.rglob("*"))]:
            info = path.lstat()
            content = None
            if stat.S_ISREG(info.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            seen[str(path)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                               info.st_mtime_ns, info.st_uid, content)
    return seen


def status_of(cli: Cli) -> tuple[int, str, dict[str, Any] | None]:
    """Runs `status` and `status --json`; asserts neither changed anything on disk."""
    roots = (cli.project, Path(cli.env["CIDX_CONFIG_DIR"]))
    before = snapshot(*roots)
    human = cli.run("status")
    machine = cli.run("status", "--json")
    assert snapshot(*roots) == before
    assert "Traceback" not in human.stderr + machine.stderr
    assert human.returncode == machine.returncode
    report = json.loads(machine.stdout) if machine.stdout else None
    return human.returncode, human.stdout + human.stderr, report


def test_status_in_a_project_never_logged_in_creates_nothing(cli: Cli) -> None:
    code, shown, report = status_of(cli)
    assert code == 3 and report is not None and report["logged_in"] is False
    assert "cidx-auth login" in shown
    assert not (cli.project / ".code-indexer").exists()
    assert not Path(cli.env["CIDX_CONFIG_DIR"]).exists()


def test_status_does_not_create_a_missing_secret(cli: Cli, hostile: HostileServer) -> None:
    logged_in(cli, hostile.url)
    shutil.rmtree(cli.env["CIDX_CONFIG_DIR"])
    code, shown, _ = status_of(cli)
    assert code == 2 and "per-user secret" in shown and "is missing" in shown
    assert not Path(cli.env["CIDX_CONFIG_DIR"]).exists()


def test_status_reports_a_damaged_token_and_leaves_it_and_the_locks_alone(
    cli: Cli, hostile: HostileServer
) -> None:
    logged_in(cli, hostile.url)
    directory = cli.project / ".code-indexer"
    for lock in (".token.lock", ".state.lock"):
        (directory / lock).unlink(missing_ok=True)
    cli.token_file.write_bytes(b"gAAAAAB-damaged")
    os.chmod(cli.token_file, 0o600)
    code, shown, report = status_of(cli)
    assert code == 0 and report is not None, shown
    assert report["token_state"] == "none"
    assert any("sets it aside" in finding for finding in report["findings"])
    assert "sets it aside" in shown
    assert not list(directory.glob("*.lock")) and not list(directory.glob("*corrupt*"))


def test_status_reports_wide_modes_and_corrects_none(cli: Cli, hostile: HostileServer) -> None:
    logged_in(cli, hostile.url)
    directory = cli.project / ".code-indexer"
    os.chmod(directory, 0o755)  # noqa: S103 - widened on purpose: status must not fix it
    for name in ("auth.json", ".token", ".creds"):
        os.chmod(directory / name, 0o644)
    os.chmod(Path(cli.env["CIDX_CONFIG_DIR"]) / "user.secret", 0o644)
    code, shown, report = status_of(cli)
    assert code == 0 and report is not None, shown
    assert report["token_state"] == "fresh"
    assert sum("has mode 644" in finding for finding in report["findings"]) == 3
    assert stat.S_IMODE((directory / ".token").stat().st_mode) == 0o644


# ---- absurd numbers in .state -------------------------------------------------------


def write_state(cli: Cli, breaker: str, last_refresh: str = "null") -> None:
    (cli.project / ".code-indexer" / ".state").write_text(
        '{"version": 1, "breaker": {"circuit": "open", "failures": 5, '
        f'{breaker}, "probe_until": null, "open_period": 30.0}}, "counters": {{}}, '
        f'"last_refresh": {last_refresh}}}'
    )


@pytest.mark.parametrize("open_until", ["1e12", "1e20", "Infinity", "-Infinity", "NaN",
                                        "1" + "0" * 400])
def test_an_impossible_state_file_is_reported_and_blocks_nothing(
    cli: Cli, hostile: HostileServer, open_until: str
) -> None:
    logged_in(cli, hostile.url)
    write_state(cli, f'"open_until": {open_until}', last_refresh=open_until)
    code, shown, report = status_of(cli)
    assert code == 0 and report is not None, shown
    assert report["breaker"] == "closed"
    assert any("state file is damaged" in finding for finding in report["findings"])
    query = cli.run("query", "auth", "--repo", "backend")
    assert query.returncode == 0, query.stderr
    assert cli.login(hostile.url).returncode == 0


def test_deeply_nested_state_is_damaged_not_a_crash(cli: Cli, hostile: HostileServer) -> None:
    logged_in(cli, hostile.url)
    (cli.project / ".code-indexer" / ".state").write_text("[" * 30000 + "]" * 30000)
    code, shown, report = status_of(cli)
    assert code == 0 and report is not None, shown
    assert any("state file is damaged" in finding for finding in report["findings"])
    assert cli.run("query", "auth", "--repo", "backend").returncode == 0


def test_a_far_but_possible_open_circuit_has_ended_and_status_shows_dates(
    cli: Cli, hostile: HostileServer
) -> None:
    logged_in(cli, hostile.url)
    three_days_ago = time.time() - 3 * 86400
    write_state(cli, '"open_until": 1e11', last_refresh=repr(three_days_ago))  # year 5138
    code, shown, report = status_of(cli)
    assert code == 0 and report is not None, shown
    assert report["findings"] == []
    day = time.strftime("%Y-%m-%d", time.localtime(three_days_ago))
    assert re.search(rf"last refresh: {day} \d\d:\d\d:\d\d", shown), shown
    query = cli.run("query", "auth", "--repo", "backend")  # the open circuit has ended
    assert query.returncode == 0, query.stderr


# ---- logout leaves nothing decryptable ------------------------------------------------


@pytest.mark.parametrize("beside_cidx_client", [False, True])
@pytest.mark.parametrize("forget", [False, True])
def test_logout_removes_the_set_aside_copies_of_the_session(
    cli: Cli, hostile: HostileServer, beside_cidx_client: bool, forget: bool
) -> None:
    directory = cli.project / ".code-indexer"
    if beside_cidx_client:
        directory.mkdir(mode=0o700)
        (directory / CIDX_CLIENT_MARK).write_text('{"mode": "local"}')
    logged_in(cli, hostile.url)
    layout = ProjectLayout(cli.project)
    good = layout.token.read_bytes()
    layout.token.write_bytes(b"gAAAAAB-damaged")
    assert cli.run("token").returncode == 0  # sets the damaged file aside, logs in again
    shutil.copy(layout.token, layout.token.with_name(
        f"{layout.token.name}.corrupt-20250101T000000.000000Z-0000"))
    layout.token.with_name(f"{layout.token.name}.corrupt-20250101T000000.000000Z-0001") \
        .write_bytes(good)
    assert len(list(directory.glob(f"{layout.token.name}.corrupt-*"))) == 3
    done = cli.run("logout", *(["--forget"] if forget else []))
    assert done.returncode == 0, done.stderr
    left = sorted(path.name for path in directory.iterdir())
    assert not [name for name in left if ".corrupt-" in name], left
    assert not layout.token.exists()
    assert not layout.creds.exists()  # logout always removes the password (decisions.md)
    assert (directory / CIDX_CLIENT_MARK).exists() is beside_cidx_client


def test_status_and_logout_with_the_session_in_redis(cli: Cli, hostile: HostileServer) -> None:
    with RedisServer(redis_binary()) as redis_server:
        logged_in(cli, hostile.url, "--store", redis_server.url)
        client = redis_server.client()
        key = next(name for name in client.keys("cidx-auth:token:*")
                   if not name.endswith(b":lock"))
        client.set(key, b"gAAAAAB-damaged")

        def everything() -> dict[bytes, Any]:
            return {name: client.dump(name) for name in client.keys("*")}

        before = everything()
        code, shown, report = status_of(cli)
        assert code == 0 and report is not None and report["store"] == "redis", shown
        assert report["token_state"] == "none" and "could not be used" in shown
        assert everything() == before  # not set aside, no lock taken
        assert cli.run("token").returncode == 0  # the next command sets it aside
        assert client.exists(key + b":corrupt")
        done = cli.run("logout", "--forget")
        assert done.returncode == 0, done.stderr
        assert not client.exists(key) and not client.exists(key + b":corrupt")


def test_logout_removes_a_planted_set_aside_link_and_not_its_target(
    cli: Cli, hostile: HostileServer, tmp_path: Path
) -> None:
    logged_in(cli, hostile.url)
    target = tmp_path / "bashrc"
    target.write_text("export PATH=$HOME/bin:$PATH\n")
    link = cli.token_file.with_name(".token.corrupt-20250101T000000.000000Z-0000")
    link.symlink_to(target)
    done = cli.run("logout")
    assert done.returncode == 0, done.stderr
    assert not os.path.lexists(link)
    assert target.read_text() == "export PATH=$HOME/bin:$PATH\n"
