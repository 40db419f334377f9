"""`status --json` for machines, and times people can read (issue 11, item 3): the CLI
in real processes against the reference server on loopback."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cidx_auth.app.status import MOMENTS
from refserver.harness import RunningServer
from tests.cidx_client_format import write_client_project
from tests.e2e.conftest import PASSWORD, USER, Cli
from tests.e2e.test_breaker_recovery import breaker, repos, status

pytestmark = pytest.mark.slow

README = Path(__file__).parents[2] / "README.md"


def offset_time(value: Any) -> datetime:
    """``value`` read as ISO 8601; it must carry its UTC offset."""
    assert isinstance(value, str), value
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None and moment.utcoffset() is not None, value
    return moment


def test_every_time_is_iso_8601_with_an_offset_and_durations_are_seconds(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    refreshed = cli.run("token", "--refresh")  # a real refresh: `last_refresh` is set
    assert refreshed.returncode == 0, refreshed.stderr
    server.inject("error", count=5, status=500, paths=["/api/repos"])
    assert repos(cli).returncode == 4 and repos(cli).returncode == 4  # 3 + 2 failures: open
    before = time.time()
    report = status(cli)
    after = time.time()

    for name in MOMENTS:
        offset_time(report[name])
    checked = offset_time(report["checked_at"]).timestamp()
    assert int(before) <= checked <= after
    assert report["breaker"] == "open" and report["breaker_failures"] == 5
    assert offset_time(report["next_attempt"]).timestamp() == int(breaker(cli)["open_until"])
    assert before - 60 <= offset_time(report["last_refresh"]).timestamp() <= after
    expires = offset_time(report["expires_at"]).timestamp()
    assert isinstance(report["seconds_left"], int)
    # Until the token stops being safe to send: the expiry less the 30 s clock-skew margin.
    assert abs(expires - 30 - checked - report["seconds_left"]) <= 2  # both whole seconds
    assert report["counters"]["refreshes"] == 1
    assert report["algorithms"] == ["RS256"] and report["store"] == "file"
    assert report["findings"] == []


def documented_fields() -> set[str]:
    """The field names README's `status --json` table lists."""
    text = README.read_text()
    table = text.split("`status --json` prints one object", 1)[1].split("\n\n", 2)[1]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        names.update(re.findall(r"`(\w+)`", row.split("|")[1]))
    return names


def test_readme_documents_exactly_the_fields_status_emits(
    cli: Cli, server: RunningServer, tmp_path: Path
) -> None:
    emitted = set(status(cli))  # not logged in: `next_step`
    assert cli.login(server.url).returncode == 0
    emitted |= set(status(cli))
    client_project = Cli(tmp_path / "cidx-project", cli.env)  # not adopted: `approved`
    client_project.project.mkdir()
    write_client_project(client_project.project, server_url=server.url, username=USER,
                         password=PASSWORD)
    emitted |= set(status(client_project))
    copied = Cli(tmp_path / "copied", cli.env)  # auth.json of another project: `error`
    (copied.project / ".code-indexer").mkdir(parents=True, mode=0o700)
    (copied.project / ".code-indexer" / "auth.json").write_bytes(
        (cli.project / ".code-indexer" / "auth.json").read_bytes())
    emitted |= set(status(copied))
    assert documented_fields() == emitted


def plant_last_refresh(cli: Cli, moment: datetime) -> None:
    path = cli.project / ".code-indexer" / ".state"
    document = json.loads(path.read_text())
    document["last_refresh"] = moment.timestamp()
    path.write_text(json.dumps(document))


def human_last_refresh(cli: Cli) -> str:
    done = cli.run("status")
    assert done.returncode == 0, done.stderr
    found = re.search(r"last refresh: (.+)\n", done.stdout)
    assert found, done.stdout
    return found.group(1)


def test_people_see_the_date_exactly_when_a_time_is_not_today(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    assert repos(cli).returncode == 0  # .state exists
    now = datetime.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if now.hour >= 12:  # today far away, and another day near: either way round
        today_far, other_near = midnight + timedelta(seconds=1), midnight + timedelta(days=1)
    else:
        today_far = midnight + timedelta(days=1, seconds=-1)
        other_near = midnight - timedelta(seconds=1)
    plant_last_refresh(cli, today_far)
    assert human_last_refresh(cli) == today_far.strftime("%H:%M:%S")
    plant_last_refresh(cli, other_near)
    assert human_last_refresh(cli) == other_near.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("as_json", [False, True])
def test_status_prints_a_name_an_ascii_terminal_cannot_show_without_a_traceback(
    cli: Cli, as_json: bool
) -> None:
    from tests.settings_signing import write_signed

    write_signed(cli.project, {"server_url": "https://cidx.example.com", "username": "zoë"},
                 cli.config_dir)
    done = cli.run("status", *(["--json"] if as_json else []),
                   env_extra={"PYTHONIOENCODING": "ascii"})
    # Logged in nowhere (settings only): exit 3, printed all the same.
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert "zo" in done.stdout and "logged" in done.stdout
