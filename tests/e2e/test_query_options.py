"""`cidx-auth query` with the real `cidx query` option names (issue 11, item 1): each option
lands in its body field at the reference server, each limit is refused (exit 2) before a
single request, and what the server refuses exits 6 without echoing the input."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import Cli, server_with
from tests.integration.hostile_server import HostileServer, grant, respond

pytestmark = pytest.mark.slow

TEXT = "token refresh"


@pytest.fixture(scope="module")
def running() -> Iterator[RunningServer]:
    with server_with() as server:
        yield server


@pytest.fixture(scope="module")
def logged_in(running: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One project logged in once for the module; each test starts the counters afresh."""
    base = tmp_path_factory.mktemp("query-options")
    (base / "project").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    cli = Cli(base / "project", {**env, "CIDX_CONFIG_DIR": str(base / "config")})
    done = cli.login(running.url)
    assert done.returncode == 0, done.stderr
    return cli


@pytest.fixture
def cli(logged_in: Cli, running: RunningServer) -> Cli:
    running.reset()
    return logged_in


def queries(server: RunningServer) -> int:
    return int(server.stats()["totals"]["queries"])


# (the CLI's options, the body fields they must send besides query_text and limit)
MAPPED: list[tuple[list[str], dict[str, Any]]] = [
    ([], {}),  # neither --fts nor --semantic: search_mode left to the server
    (["--repo", "docs"], {"repository_alias": "docs"}),
    (["-l", "3"], {"limit": 3}),
    (["--limit", "100"], {"limit": 100}),
    (["--language", "python"], {"language": "python"}),
    (["--exclude-language", "markdown"], {"exclude_language": "markdown"}),
    (["--path-filter", "src/*"], {"path_filter": "src/*"}),
    (["--exclude-path", "docs/*"], {"exclude_path": "docs/*"}),
    (["--min-score", "0.5"], {"min_score": 0.5}),
    (["--accuracy", "high"], {"accuracy": "high"}),
    (["--fts"], {"search_mode": "fts"}),
    (["--semantic"], {"search_mode": "semantic"}),
    (["--fts", "--semantic"], {"search_mode": "hybrid"}),
    (["--case-sensitive"], {"case_sensitive": True}),
    (["--fuzzy"], {"fuzzy": True}),
    (["--edit-distance", "2"], {"edit_distance": 2}),
    (["--snippet-lines", "0"], {"snippet_lines": 0}),
    (["--regex"], {"regex": True}),
    (["--file-extensions", ".py,.ts", "--file-extensions", "md"],
     {"file_extensions": [".py", ".ts", "md"]}),
    (["--time-range", "2024-01-01..2024-12-31"], {"time_range": "2024-01-01..2024-12-31"}),
    (["--time-range-all"], {"time_range_all": True}),
    (["--at-commit", "abc123"], {"at_commit": "abc123"}),
    (["--diff-type", "added"], {"diff_type": "added"}),
    (["--diff-type", "added,deleted"], {"diff_type": ["added", "deleted"]}),
    (["--author", "alice"], {"author": "alice"}),
    (["--chunk-type", "commit_diff"], {"chunk_type": "commit_diff"}),
]


@pytest.mark.parametrize(("options", "fields"), MAPPED,
                         ids=[" ".join(options) or "none" for options, _ in MAPPED])
def test_each_option_is_sent_as_its_body_field(
    cli: Cli, running: RunningServer, options: list[str], fields: dict[str, Any]
) -> None:
    done = cli.run("query", TEXT, *options, "--json")
    assert done.returncode == 0, done.stderr
    assert running.last_query() == {"query_text": TEXT, "limit": 10, **fields}
    assert queries(running) == 1
    assert isinstance(json.loads(done.stdout)["results"], list)


# (the CLI's arguments, what the message must name)
REFUSED: list[tuple[list[str], list[str]]] = [
    (["x" * 1001], ["TEXT", "1001 characters", "1 to 1000"]),
    (["   "], ["TEXT", "needs some text"]),
    ([TEXT, "--repo", "r" * 256], ["--repo", "at most 255"]),
    ([TEXT, "--repo", ""], ["--repo", "empty"]),
    ([TEXT, "-l", "0"], ["--limit", "1 to 100"]),
    ([TEXT, "--limit", "101"], ["--limit", "1 to 100"]),
    ([TEXT, "--min-score", "-0.01"], ["--min-score", "0 to 1"]),
    ([TEXT, "--min-score", "1.01"], ["--min-score", "0 to 1"]),
    ([TEXT, "--min-score", "nan"], ["--min-score", "0 to 1"]),
    ([TEXT, "--edit-distance", "-1"], ["--edit-distance", "0 to 3"]),
    ([TEXT, "--edit-distance", "4"], ["--edit-distance", "0 to 3"]),
    ([TEXT, "--snippet-lines", "-1"], ["--snippet-lines", "0 to 50"]),
    ([TEXT, "--snippet-lines", "51"], ["--snippet-lines", "0 to 50"]),
    ([TEXT, "--accuracy", "low"], ["--accuracy", "'low' is not one of"]),
    ([TEXT, "--chunk-type", "diff"], ["--chunk-type", "'diff' is not one of"]),
    ([TEXT, "--limit", "ten"], ["--limit", "'ten' is not a valid integer"]),
    ([TEXT, "--file-extensions", ".py,,md"], ["--file-extensions", "empty"]),
    ([TEXT, "--language", ""], ["--language", "empty"]),
    ([TEXT + "\udcff"], ["TEXT", "not valid UTF-8"]),  # the byte 0xff on the command line
    ([TEXT, "--repo", "b\udcffckend"], ["--repo", "not valid UTF-8"]),
]


@pytest.mark.parametrize(("arguments", "words"), REFUSED,
                         ids=[" ".join(a)[:40] for a, _ in REFUSED])
def test_each_limit_is_refused_before_any_request(
    cli: Cli, running: RunningServer, arguments: list[str], words: list[str]
) -> None:
    done = cli.run("query", *arguments)
    assert done.returncode == 2, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "unexpected" not in done.stderr
    assert queries(running) == 0 and running.stats()["requests"] == 0
    assert running.last_query() is None


def test_a_value_the_server_refuses_exits_6_without_the_echoed_input(
    cli: Cli, running: RunningServer
) -> None:
    marker = "ECHOED-INPUT-"
    body = {"query_text": marker * 100, "limit": 987654}
    done = cli.run("request", "POST", "/api/query", "--data", json.dumps(body))
    assert done.returncode == 6, done.stderr
    assert "422" in done.stderr
    assert "query_text: String should have at most 1000 characters" in done.stderr
    assert "limit: Input should be less than or equal to 100" in done.stderr
    assert marker not in done.stderr + done.stdout and "987654" not in done.stderr
    assert queries(running) == 1  # the server did see it: only the client can refuse first


def test_an_unknown_repository_exits_6_with_the_servers_detail(
    cli: Cli, running: RunningServer
) -> None:
    done = cli.run("query", TEXT, "--repo", "no-such-repo")
    assert done.returncode == 6, done.stderr
    assert "404" in done.stderr and "Repository 'no-such-repo' not found" in done.stderr


def test_into_a_pipe_every_hit_names_its_repository(cli: Cli) -> None:
    everywhere = cli.run("query", TEXT)  # stdout is a pipe: one tab-separated line per hit
    assert everywhere.returncode == 0, everywhere.stderr
    rows = [line.split("\t") for line in everywhere.stdout.splitlines()]
    assert rows and all(len(row) == 4 for row in rows)
    assert {"backend", "frontend", "docs"} <= {row[1] for row in rows}
    one = cli.run("query", TEXT, "--repo", "docs")
    assert one.returncode == 0, one.stderr
    assert {line.split("\t")[1] for line in one.stdout.splitlines()} == {"docs"}


@pytest.mark.parametrize("results", ["not a list", ["not an object"]])
def test_results_that_are_not_a_list_of_objects_exit_4(tmp_path: Path, results: Any) -> None:
    answer = json.dumps({"results": results, "total_results": 1})
    routes = {"/auth/login": grant, "/api/auth/refresh": grant,
              "/api/query": respond(200, answer)}
    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    cli = Cli(project, {**env, "CIDX_CONFIG_DIR": str(tmp_path / "config")})
    with HostileServer(routes) as hostile:
        assert cli.login(hostile.url).returncode == 0
        done = cli.run("query", TEXT)
    assert done.returncode == 4, done.stderr
    assert "not a list of objects" in done.stderr and "--json" in done.stderr
    assert "Traceback" not in done.stderr
