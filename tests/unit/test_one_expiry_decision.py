"""One decision on a stored session: the fast path, ``status``, the Redis store's fallback
and the renewal give the answer :meth:`Rules.judge` gives, for the same sessions.

The project pins RS256; one session is signed HS256 (outside the pin), one was refused
by the server. The fast path and ``status`` read a real project directory (tmp_path);
the renewal and the Redis store run in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.fernet_cipher import project_cipher
from adapters.file_io import write_private
from adapters.memory import make_jwt
from adapters.project_layout import ProjectLayout, ProjectSettings, save_settings
from adapters.redis_token_store import RedisTokenStore
from adapters.secret_sources import secret_source
from adapters.session_codec import encode_session
from cidx_auth.app.fastpath import fresh_stored_token
from cidx_auth.app.status import collect
from cidx_auth.domain.errors import StorageError
from cidx_auth.domain.expiry import TokenState
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import AccessToken, Session
from tests.unit.conftest import make_world

PIN = ("RS256",)
RULES = Rules.pinned(PIN)
SERVER = "https://cidx.example"


def session_with(now: float, left: float, *, alg: str = "RS256", refused: bool = False) -> Session:
    """A session of a one-hour token with ``left`` seconds to live at ``now``."""
    exp, iat = now + left, now + left - 3600
    raw = make_jwt({"exp": exp, "iat": iat, "username": "alice"}, alg=alg)
    token = AccessToken(raw, alg, exp, iat, None, "alice")
    return Session(token, None, 0.0, "alice", refused=refused)


CASES: dict[str, tuple[Callable[[float], Session], TokenState]] = {
    "fresh": (lambda now: session_with(now, 3000), TokenState.FRESH),
    "stale": (lambda now: session_with(now, 200), TokenState.STALE),
    "expired": (lambda now: session_with(now, 10), TokenState.EXPIRED),
    "refused": (lambda now: session_with(now, 3000, refused=True), TokenState.REFUSED),
    "outside the pin": (lambda now: session_with(now, 3000, alg="HS256"),
                        TokenState.NOT_ALLOWED),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Callable[[float], Session], TokenState]:
    return CASES[request.param]


def test_the_rules_judge_each_case_as_named(
    case: tuple[Callable[[float], Session], TokenState],
) -> None:
    make, expected = case
    now = 1_800_000_000.0
    assert RULES.judge(make(now), now) is expected
    assert expected.usable == (expected in (TokenState.FRESH, TokenState.STALE))


def plant_project(root: Path, session: Session, monkeypatch: pytest.MonkeyPatch,
                  server: str = SERVER) -> None:
    """A project of ``server`` pinned to RS256 whose token file holds ``session``."""
    monkeypatch.setenv("CIDX_CONFIG_DIR", str(root / "config"))
    layout = ProjectLayout(root / "project")
    layout.directory.mkdir(parents=True)
    save_settings(layout, ProjectSettings(server, "alice", PIN))
    cipher = project_cipher(layout.root, server, secret_source())
    now = time.time()
    write_private(layout.token, encode_session(session, cipher, now), sweep_young=False, now=now)


def test_the_fast_path_prints_only_what_the_rules_call_fresh(
    case: tuple[Callable[[float], Session], TokenState], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make, expected = case
    session = make(time.time())
    plant_project(tmp_path, session, monkeypatch)
    printed = fresh_stored_token(tmp_path / "project")
    assert printed == (session.token.raw if expected is TokenState.FRESH else None)


def test_status_reports_the_rules_verdict(
    case: tuple[Callable[[float], Session], TokenState], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make, expected = case
    plant_project(tmp_path, make(time.time()), monkeypatch)
    report = collect(tmp_path / "project")
    assert report["token_state"] == expected.value
    assert (report["seconds_left"] > 0) == expected.usable
    outside = [line for line in report["findings"] if "outside the pinned RS256" in line]
    assert bool(outside) == (expected is TokenState.NOT_ALLOWED)
    if outside:  # says what the next command does about it
        assert "HS256" in outside[0] and "the next command obtains a new one" in outside[0]


def test_the_renewal_uses_a_stored_session_only_when_the_rules_call_it_fresh(
    case: tuple[Callable[[float], Session], TokenState],
) -> None:
    make, expected = case
    world = make_world(rules=RULES)
    stored = make(world.clock.now())
    world.store.session = stored
    token = world.provider.get_token()
    assert (token == stored.token.raw) == (expected is TokenState.FRESH)
    assert world.gateway.logins == (0 if expected is TokenState.FRESH else 1)


class _RedisGoneAfterOneRead:
    """Just enough of a redis client: one answer, then the server is unreachable."""

    def __init__(self, blob: bytes) -> None:
        self.blob: bytes | None = blob
        self.connection_pool = SimpleNamespace(connection_kwargs={})  # a plain primary

    def register_script(self, script: str) -> object:
        return None

    def get(self, key: str) -> bytes:
        blob, self.blob = self.blob, None
        if blob is None:
            raise RedisConnectionError("Connection refused")
        return blob


def test_the_redis_store_stands_in_with_a_cached_session_only_while_the_rules_allow(
    case: tuple[Callable[[float], Session], TokenState],
) -> None:
    make, expected = case
    now = 1_800_000_000.0
    session = make(now)
    cipher = _PlainCipher()
    client: Any = _RedisGoneAfterOneRead(encode_session(session, cipher, now))
    store = RedisTokenStore(client, "key", cipher, clock=lambda: now, local_cache_ttl=0.0,
                            url="redis://127.0.0.1:6379/0", rules=RULES)
    assert store.load() == session  # read while Redis answered: cached
    if expected.usable:
        assert store.load() == session  # no refresh token to drop here
    else:
        with pytest.raises(StorageError, match="could not read the session"):
            store.load()


class _PlainCipher:
    """The Cipher port without the cost of keys: the test is about the decision."""

    def encrypt(self, data: bytes) -> bytes:
        return data

    def decrypt(self, data: bytes) -> bytes:
        return data
