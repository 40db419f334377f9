"""FakeCidx: the fake CIDX server users' tests get, with its real rules, and README's example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.cidx_calls import ApiUnavailable
from cidx_auth import QueryResult
from cidx_auth.domain.errors import AccountLocked, ConfigurationError, InvalidCredentials
from refserver.inprocess import URL
from refserver.testing import FakeCidx

README = Path(__file__).resolve().parents[2] / "README.md"


def totals(cidx: FakeCidx) -> dict[str, int]:
    return {name: value for name, value in cidx.stats()["totals"].items() if value}


def test_an_expired_token_is_renewed_by_one_refresh_without_sleeping() -> None:
    with FakeCidx() as cidx, cidx.client() as client:
        first = client.query("rotate", "backend", limit=2)
        cidx.expire_tokens()
        assert client.query("rotate", "backend", limit=2) == first
        assert isinstance(first, QueryResult) and first.hits[0].repository_alias == "backend"
        assert totals(cidx) == {"logins": 1, "refreshes": 1, "queries": 2}
        assert cidx.clock.sleeps == []
        assert cidx.last_query == {"query_text": "rotate", "repository_alias": "backend",
                                   "limit": 2}


def test_a_refused_token_costs_one_401_one_refresh_and_the_call_goes_through() -> None:
    with FakeCidx() as cidx, cidx.client() as client:
        client.repos()
        assert cidx.refuse_tokens() == 1
        assert client.repos()["total"] == 3
        assert cidx.stats()["auth_401"] == 1
        assert totals(cidx) == {"logins": 1, "refreshes": 1}


def test_expired_tokens_are_not_counted_as_refused() -> None:
    with FakeCidx() as cidx, cidx.client() as client:
        client.repos()
        cidx.expire_tokens()
        assert cidx.refuse_tokens() == 0  # expired already: refused, but not by this
        client.repos()
        assert cidx.stats()["auth_401"] == 0
        assert totals(cidx) == {"logins": 1, "refreshes": 1}


def test_revoked_refresh_tokens_make_the_client_log_in_again() -> None:
    with FakeCidx() as cidx, cidx.client() as client:
        client.repos()
        assert cidx.revoke("alice") == 1
        cidx.expire_tokens()
        client.repos()
        assert totals(cidx) == {"logins": 2, "failed_refreshes": 1}


def test_an_outage_fails_the_call_after_its_retries_and_restore_ends_it() -> None:
    with FakeCidx() as cidx, cidx.client() as client:
        client.repos()
        cidx.outage()
        with pytest.raises(ApiUnavailable, match="503"):
            client.repos()
        assert totals(cidx)["faults_fired"] == 3  # three attempts, backoff on the fake clock
        cidx.restore()
        assert client.repos()["total"] == 3
        assert len(cidx.clock.sleeps) == 2


def test_wrong_passwords_lock_the_account_as_the_real_server_does() -> None:
    with FakeCidx() as cidx:
        for _ in range(5):
            with cidx.client("alice", password="wrong") as client, \
                    pytest.raises(InvalidCredentials):
                client.repos()
        with cidx.client("alice") as client, pytest.raises(AccountLocked, match="locked"):
            client.repos()  # the right password, refused all the same


async def test_the_async_client_and_an_own_httpx_client_reach_the_same_server() -> None:
    with FakeCidx(users={"bob": "pw"}, repositories=("only",)) as cidx:
        async with cidx.async_client("bob") as client:
            assert [hit.repository_alias for hit in await client.query("x")] == ["only"] * 5
            cidx.expire_tokens()
            assert (await client.repos())["total"] == 1
        http = cidx.httpx_client("bob")
        assert http.get("/api/repos").json()["total"] == 1
        assert totals(cidx) == {"logins": 2, "refreshes": 1, "queries": 1}


def test_an_unknown_user_is_named_with_the_way_to_provoke_a_refusal() -> None:
    with FakeCidx() as cidx:
        for make in (cidx.client, cidx.async_client, cidx.httpx_client, cidx.provider):
            with pytest.raises(ConfigurationError,
                               match=r"'bob' is not one of this FakeCidx's users \('alice'\)"
                                     r".*password='wrong'"):
                make("bob")
        with cidx.client("bob", password="any") as client, \
                pytest.raises(InvalidCredentials):
            client.repos()  # with a password: the server's own refusal, as documented


@pytest.mark.parametrize(("arguments", "words"), [
    ({"repositories": "backend"}, r"takes a sequence of aliases \('backend' would not do\)"),
    ({"repositories": ("a", 1)}, "takes a sequence of aliases"),
    ({"users": ["alice"]}, "takes a mapping of user names to passwords"),
    ({"users": {"alice": 7}}, "takes a mapping of user names to passwords"),
    ({"token_lifetime": "600"}, "takes whole seconds, 1 or more"),
    ({"token_lifetime": 0}, "takes whole seconds, 1 or more"),
])
def test_bad_arguments_are_refused_saying_what_to_give(arguments: dict[str, Any],
                                                       words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        FakeCidx(**arguments)


@pytest.mark.parametrize(("arguments", "words"), [
    ({"status": "x"}, "an HTTP error status from 400 to 599 .*not 'x'"),
    ({"status": 200}, "an HTTP error status from 400 to 599"),
    ({"status": True}, "an HTTP error status"),
    ({"requests": 0}, "a count of 1 or more"),
    ({"requests": "3"}, "a count of 1 or more"),
])
def test_a_bad_outage_is_refused_saying_what_to_give(arguments: dict[str, Any],
                                                     words: str) -> None:
    with FakeCidx() as cidx:
        with pytest.raises(ConfigurationError, match=words):
            cidx.outage(**arguments)
        assert cidx.state.faults.pending() == []  # nothing armed


@pytest.mark.replays(2)  # the suite's own watch sees both FakeCidx servers' replays too
def test_a_replay_fails_the_test_unless_it_was_declared() -> None:
    def replay(cidx: FakeCidx) -> None:
        with httpx.Client(base_url=URL, transport=cidx._bridge) as raw:
            grant = raw.post("/auth/login", json={"username": "alice", "password": "secret"})
            body = {"refresh_token": grant.json()["refresh_token"]}
            assert raw.post("/api/auth/refresh", json=body).status_code == 200
            again = raw.post("/api/auth/refresh", json=body)
            assert again.json() == {"detail": "Token replay attack detected"}

    cidx = FakeCidx()
    replay(cidx)
    with pytest.raises(AssertionError, match="saw 1 replayed refresh token"):
        cidx.close()
    with FakeCidx() as declared:
        declared.expected_replays = 1
        replay(declared)


def test_an_undeclared_replay_fails_even_under_python_dash_o() -> None:
    """``python -O`` drops assert statements: the check is a raise, so it stays."""
    script = (
        "import httpx\n"
        "from refserver.inprocess import URL\n"
        "from refserver.testing import FakeCidx\n"
        "cidx = FakeCidx()\n"
        "with httpx.Client(base_url=URL, transport=cidx._bridge) as raw:\n"
        "    grant = raw.post('/auth/login', json={'username': 'alice', 'password': 'secret'})\n"
        "    body = {'refresh_token': grant.json()['refresh_token']}\n"
        "    raw.post('/api/auth/refresh', json=body)\n"
        "    raw.post('/api/auth/refresh', json=body)\n"
        "try:\n"
        "    cidx.close()\n"
        "except AssertionError as error:\n"
        "    print('refused:', error)\n")
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "refused: the fake CIDX server saw 1 replayed refresh token" in done.stdout


def test_the_readme_pytest_example_runs_as_written(tmp_path: Path) -> None:
    """README's example, as a user would paste it into a test file of their own."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    (example,) = [block for block in blocks if "from refserver.testing import" in block]
    assert len(example.strip().splitlines()) <= 11  # the ten lines the issue asked for
    # Its 401 really happens: a query, then refuse_tokens(), then a query, then the count.
    assert 'cidx.stats()["auth_401"] == 1' in example
    (tmp_path / "test_example.py").write_text(example)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "test_example.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b[1-9]\d* passed\b", done.stdout), done.stdout
