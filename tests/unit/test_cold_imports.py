"""What each cold command loads, checked by module name rather than by the clock.

Each command runs as its own process, through the console script's entry point, and
writes the names in ``sys.modules`` when it exits. A timing test would be flaky on a
shared machine; a heavy import that creeps back onto a cold path shows up here at once.
``make bench`` (bench/bench_cold.py) measures what these paths cost.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.file_io import held_back, info, warn
from tests.unit.test_one_expiry_decision import plant_project, session_with

REPORT = """
import json, os, sys
sys.argv = ["cidx-auth", *json.loads(os.environ["COLD_ARGV"])]
from cidx_auth.app.entry import main
try:
    main()
finally:
    with open(os.environ["COLD_MODULES"], "w") as out:
        json.dump(sorted(name for name, module in sys.modules.items() if module), out)
"""

NEVER_COLD = {"httpx", "click", "dependency_injector", "rich", "pygments", "redis",
              "cidx_auth.app.cli", "cidx_auth.app.container", "adapters.httpx_gateway"}
"""What neither ``token`` (fresh) nor ``status`` may load: the network, the full CLI,
the container, and the stores' optional backends."""


def uncovered_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a command under test, without coverage, which `make test`
    starts in subprocesses: it loads modules of its own (hashlib among them)."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")}
    return {**env, "CIDX_CONFIG_DIR": str(tmp_path / "config"), **extra}


def cold_run(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    modules = tmp_path / "modules.json"
    env = uncovered_env(tmp_path, COLD_MODULES=str(modules),
                        COLD_ARGV=json.dumps(["--project", str(tmp_path / "project"), *argv]))
    done = subprocess.run([sys.executable, "-c", REPORT], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    return done, set(json.loads(modules.read_text()))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A project with a fresh stored token; its raw value."""
    session = session_with(time.time(), 3000)
    plant_project(tmp_path, session, monkeypatch)
    return session.token.raw


def test_token_with_a_fresh_stored_token_loads_no_network_cli_or_services(
    tmp_path: Path, project: str,
) -> None:
    done, loaded = cold_run(tmp_path, "token")
    assert (done.returncode, done.stdout, done.stderr) == (0, project + "\n", "")
    assert loaded & NEVER_COLD == set()
    assert loaded & {"logging", "cidx_auth.service.renewal", "cidx_auth.app.project"} == set()
    assert "cidx_auth.app.fastpath" in loaded  # the path this test means to watch


@pytest.mark.parametrize("argv", [("status",), ("status", "--json")])
def test_status_loads_no_network_cli_or_container(
    tmp_path: Path, project: str, argv: tuple[str, ...],
) -> None:
    done, loaded = cold_run(tmp_path, *argv)
    assert done.returncode == 0 and done.stderr == ""
    assert "fresh" in done.stdout and project not in done.stdout
    assert loaded & NEVER_COLD == set()
    assert "cidx_auth.app.status" in loaded


def test_status_shows_the_proxy_without_loading_the_network(
    tmp_path: Path, project: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy decision ``status`` shows is the clients' own, read without httpx; and
    without NO_PROXY to match, without ``urllib.request`` either."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pa55@proxy.test:3128")
    done, loaded = cold_run(tmp_path, "status", "--json")
    assert done.returncode == 0 and done.stderr == "" and "pa55" not in done.stdout
    assert json.loads(done.stdout)["proxy"] == "http://proxy.test:3128"
    assert loaded & (NEVER_COLD | {"urllib.request"}) == set()


class _Repos(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"repositories": [], "total": 0}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """A server on 127.0.0.1 that answers ``GET /api/repos``."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Repos) as running:
        thread = threading.Thread(target=running.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{running.server_address[1]}"
        running.shutdown()


def test_request_loads_httpx_without_its_command_line_or_the_auth_gateway(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request with a valid token needs httpx and the CLI; not httpx's own command
    line (rich, pygments), nor the auth gateway: there is nothing to renew."""
    plant_project(tmp_path, session_with(time.time(), 3000), monkeypatch, server)
    done, loaded = cold_run(tmp_path, "request", "GET", "/api/repos")
    assert done.returncode == 0, done.stderr
    assert '"repositories": []' in done.stdout
    assert {"httpx", "cidx_auth.app.cli", "cidx_auth.app.project"} <= loaded
    assert loaded & {"httpx._main", "rich", "pygments", "adapters.httpx_gateway",
                     "redis"} == set()
    # dependency-injector's optional integrations; Starlette is installed (the reference
    # server's extra), so this fails if the CLI lets dependency-injector find it
    assert loaded & {"starlette", "yaml", "pydantic", "fastapi", "flask"} == set()
    assert "dependency_injector.containers" in loaded


def test_neither_cold_path_loads_a_second_openssl_or_logging(
    tmp_path: Path, project: str,
) -> None:
    """Digests come from cryptography, which Fernet loads anyway: ``hashlib`` would load
    another OpenSSL (``_hashlib``). Nothing on these paths logs when all is well. What
    the cryptography modules we use load themselves is not ours (cryptography 42's PBKDF2
    imports the standard library's hmac, and so hashlib; later releases do not)."""
    fernet = subprocess.run(
        [sys.executable, "-c", "import cryptography.fernet, json, sys; "
         "import cryptography.hazmat.primitives.kdf.pbkdf2, cryptography.hazmat.primitives.hmac; "
         "print(json.dumps(sorted(sys.modules)))"],
        env=uncovered_env(tmp_path), capture_output=True, text=True, timeout=60, check=True)
    floor = set(json.loads(fernet.stdout))
    for argv in (("token",), ("status",)):
        done, loaded = cold_run(tmp_path, *argv)
        assert done.returncode == 0, done.stderr
        ours = loaded - floor
        assert ours & {"hashlib", "_hashlib", "hmac", "logging", "cidx_auth.app.project"} == set()


LIBRARY_WARNS = """
import json, sys
import cidx_auth.app.status as status
from cidx_auth.app.entry import fast_status

real = status.collect

def collect_and_warn(root):
    import logging  # as keyring or redis do, on their own logger
    logging.getLogger("keyring").warning("Keyring config file contains incorrect values")
    return real(root)

status.collect = collect_and_warn
print(json.dumps(fast_status(json.loads(sys.argv[1]))))
"""


def test_status_leaves_a_library_warning_to_the_full_path(tmp_path: Path, project: str) -> None:
    """A library that logs on its own logger (keyring, redis) is not heard by the fast
    path's own hold-back, so it takes the full path, which prints warnings its own way."""
    argv = json.dumps(["--project", str(tmp_path / "project"), "status"])
    done = subprocess.run([sys.executable, "-c", LIBRARY_WARNS, argv], cwd=tmp_path,
                          env=uncovered_env(tmp_path), capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "null"), done.stderr
    assert "fresh" not in done.stdout


def test_storage_warnings_are_held_back_and_info_lines_dropped() -> None:
    with held_back() as heard:
        info("%s is cidx-auth's own file", "/p/.creds")
        warn("%s had mode %03o; setting it to %03o", "/p/.code-indexer", 0o770, 0o700)
    assert heard == ["/p/.code-indexer had mode 770; setting it to 700"]


def test_importing_the_package_loads_none_of_its_public_names(tmp_path: Path) -> None:
    """``import cidx_auth`` runs before every command, the cold ``token`` included: its
    public names load on first use (PEP 562), and the first use loads only their module."""
    script = ("import json, sys, cidx_auth; before = sorted(sys.modules); "
              "cidx_auth.QueryRequest; print(json.dumps([before, sorted(sys.modules)]))")
    done = subprocess.run([sys.executable, "-c", script], env=uncovered_env(tmp_path),
                          capture_output=True, text=True, timeout=60, check=True)
    before, after = (set(names) for names in json.loads(done.stdout))
    ours = {name for name in before if name.startswith(("cidx_auth", "adapters"))}
    assert ours == {"cidx_auth", "cidx_auth._version"}
    assert before & (NEVER_COLD | {"logging", "dataclasses", "cidx_auth.app.project"}) == set()
    assert {"cidx_auth.domain.query"} <= after
    assert after & (NEVER_COLD | {"cidx_auth.app.project", "adapters.cidx_client"}) == set()
