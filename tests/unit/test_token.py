"""The access-token rules: what a JWT must be before the client relies on it."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.memory import make_jwt
from cidx_auth.domain.errors import DisallowedAlgorithm, MalformedToken, UnusableLifetime
from cidx_auth.domain.token import (
    AccessToken,
    Grant,
    Session,
    TokenRules,
    parse_access_token,
    session_from_dict,
    session_to_dict,
)

NOW = 1_800_000_000.0
RULES = TokenRules()


def claims(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {"username": "alice", "iat": NOW, "exp": NOW + 600, "jti": "j-1"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def test_reads_alg_from_header_and_times_from_claims() -> None:
    token = parse_access_token(make_jwt(claims()), RULES, NOW)
    assert (token.alg, token.exp, token.iat) == ("RS256", NOW + 600, NOW)
    assert (token.jti, token.username, token.lifetime) == ("j-1", "alice", 600)


@pytest.mark.parametrize(
    "raw",
    ["", "abc", "a.b", "a.b.c.d", ".x.y", "!!!.???.sig", "e30.bm90IGpzb24.sig", "WzFd.e30.sig"],
)
def test_malformed_tokens_are_rejected(raw: str) -> None:
    with pytest.raises(MalformedToken):
        parse_access_token(raw, RULES, NOW)


@pytest.mark.parametrize("alg", ["none", "NONE", "None"])
def test_alg_none_is_always_rejected(alg: str) -> None:
    with pytest.raises(DisallowedAlgorithm, match="unsigned"):
        parse_access_token(make_jwt(claims(), alg=alg), TokenRules(frozenset({"RS256"})), NOW)


def test_alg_none_cannot_even_be_allowed() -> None:
    with pytest.raises(DisallowedAlgorithm):
        TokenRules(frozenset({"RS256", "none"}))
    with pytest.raises(DisallowedAlgorithm):
        TokenRules(frozenset())


def test_missing_alg_is_rejected() -> None:
    with pytest.raises(DisallowedAlgorithm):
        parse_access_token(make_jwt(claims(), header={"typ": "JWT"}), RULES, NOW)


def test_hs256_needs_to_be_allowed_explicitly() -> None:
    raw = make_jwt(claims(), alg="HS256")
    with pytest.raises(DisallowedAlgorithm, match="pinned at login"):
        parse_access_token(raw, RULES, NOW)
    assert parse_access_token(raw, TokenRules(frozenset({"HS256"})), NOW).alg == "HS256"


@pytest.mark.parametrize("exp", [None, "soon", True, float("inf"), float("nan")])
def test_no_usable_expiry(exp: object) -> None:
    body = claims(exp=None) if exp is None else {**claims(), "exp": exp}
    raw = make_jwt(body)
    with pytest.raises(UnusableLifetime):
        parse_access_token(raw, RULES, NOW)


def test_expires_in_is_only_a_fallback() -> None:
    without_exp = make_jwt(claims(exp=None))
    assert parse_access_token(without_exp, RULES, NOW, expires_in=300).exp == NOW + 300
    with_exp = make_jwt(claims())
    assert parse_access_token(with_exp, RULES, NOW, expires_in=3600).exp == NOW + 600
    with pytest.raises(UnusableLifetime):
        parse_access_token(without_exp, RULES, NOW, expires_in=0)


def test_lifetime_over_a_day_is_rejected() -> None:
    with pytest.raises(UnusableLifetime, match="24 h"):
        parse_access_token(make_jwt(claims(exp=NOW + 86_401)), RULES, NOW)
    no_iat = make_jwt({"exp": NOW + 90_000})
    with pytest.raises(UnusableLifetime):
        parse_access_token(no_iat, RULES, NOW)


def test_issued_in_the_future_beyond_the_skew_is_rejected() -> None:
    assert parse_access_token(make_jwt(claims(iat=NOW + 29, exp=NOW + 629)), RULES, NOW)
    with pytest.raises(UnusableLifetime, match="future"):
        parse_access_token(make_jwt(claims(iat=NOW + 31, exp=NOW + 631)), RULES, NOW)


def test_expiring_before_issue_is_rejected() -> None:
    with pytest.raises(UnusableLifetime):
        parse_access_token(make_jwt(claims(exp=NOW - 1)), RULES, NOW)


def test_secrets_stay_out_of_repr() -> None:
    raw = make_jwt(claims())
    token = parse_access_token(raw, RULES, NOW)
    session = Session(token, "refresh-secret-value", 0.0, "alice")
    grant = Grant(raw, "refresh-secret-value")
    for text in (repr(token), repr(session), repr(grant)):
        assert raw not in text
        assert "refresh-secret-value" not in text
    assert token.fingerprint not in raw and len(token.fingerprint) == 16


def test_session_round_trips_through_plain_data() -> None:
    token = parse_access_token(make_jwt(claims()), RULES, NOW)
    session = Session(token, "r-1", 2.5, "alice")
    data = json.loads(json.dumps(session_to_dict(session, NOW)))
    assert session_from_dict(data) == session


@pytest.mark.parametrize(
    "change",
    [
        {"version": 99},
        {"access_token": "not-a-jwt"},
        {"expires_at": "x"},
        {"issued_at": "x"},
        {"clock_offset": None},
        {"jti": 5},
        {"alg": None},
    ],
)
def test_damaged_session_data_is_rejected(change: dict[str, object]) -> None:
    token = parse_access_token(make_jwt(claims()), RULES, NOW)
    data = {**session_to_dict(Session(token), NOW), **change}
    with pytest.raises(MalformedToken):
        session_from_dict(data)
    with pytest.raises(MalformedToken):
        session_from_dict([1, 2])


@given(st.binary(max_size=300))
def test_arbitrary_input_raises_only_token_errors(data: bytes) -> None:
    text = base64.urlsafe_b64encode(data).decode()
    for raw in (text, f"{text}.{text}.x", data.decode("latin-1")):
        with contextlib.suppress(MalformedToken, DisallowedAlgorithm, UnusableLifetime):
            parse_access_token(raw, RULES, NOW)


def test_access_token_value_object_is_frozen() -> None:
    token = AccessToken("a.b.c", "RS256", NOW, None, None, None)
    with pytest.raises(AttributeError):
        token.exp = 0  # type: ignore[misc]
