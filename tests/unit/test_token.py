"""The access-token rules: what a JWT must be before the client relies on it."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.memory import make_jwt
from cidx_auth.domain.errors import (
    DisallowedAlgorithm,
    MalformedToken,
    TokenRejected,
    UnusableLifetime,
)
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
DAY = 86_400.0

CHARACTERS = "the access token holds characters a JWT cannot (only base64url and dots)"
NOT_THREE_PARTS = "the access token is not a JWT (three dot-separated parts)"
NOT_BASE64 = "the access token is not base64url-encoded"
UNSIGNED = 'the access token is unsigned (alg "none" or missing)'
NO_EXPIRY = "the access token has no usable expiry (exp claim)"
IN_THE_FUTURE = "the access token was issued in the future: check the clock"
TOO_LONG = "the access token lives longer than the 24 h maximum"
BEFORE_ISSUE = "the access token expires before it was issued"


def claims(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {"username": "alice", "iat": NOW, "exp": NOW + 600, "jti": "j-1"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def refusal(raw: str, rules: TokenRules = RULES, expires_in: float | None = None) -> TokenRejected:
    """The error parsing ``raw`` raises (the test fails if it parses)."""
    with pytest.raises(TokenRejected) as caught:
        parse_access_token(raw, rules, NOW, expires_in)
    return caught.value


def test_reads_alg_from_header_and_times_from_claims() -> None:
    token = parse_access_token(make_jwt(claims()), RULES, NOW)
    assert (token.alg, token.exp, token.iat) == ("RS256", NOW + 600, NOW)
    assert (token.jti, token.username, token.lifetime) == ("j-1", "alice", 600)


GOOD = make_jwt(claims())
HEADER, CLAIMS, SIGNATURE = GOOD.split(".")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", NOT_THREE_PARTS),
        ("abc", NOT_THREE_PARTS),
        ("a.b", NOT_THREE_PARTS),
        ("a.b.c.d", NOT_THREE_PARTS),
        (".x.y", NOT_THREE_PARTS),
        ("x..y", NOT_THREE_PARTS),
        ("!!!.???.sig", CHARACTERS),
        ("abcde.e30.sig", NOT_BASE64),  # 5 characters: no base64 has that length
        ("e30.abcde.sig", NOT_BASE64),
        ("bm90IGpzb24.e30.sig", "the access token's header is not JSON"),
        ("e30.bm90IGpzb24.sig", "the access token's claims is not JSON"),
        ("WzFd.e30.sig", "the access token's header is not a JSON object"),
        ("e30.WzFd.sig", "the access token's claims is not a JSON object"),
    ],
)
def test_malformed_tokens_are_rejected_saying_what_is_wrong(raw: str, message: str) -> None:
    error = refusal(raw)
    assert isinstance(error, MalformedToken)
    assert str(error) == message


@pytest.mark.parametrize(
    "raw",
    [f"{HEADER}.{CLAIMS}", f"{GOOD}.{SIGNATURE}", f"{HEADER}.{CLAIMS}.{SIGNATURE}."],
    ids=["two parts", "four parts", "four parts, the last empty"],
)
def test_a_jwt_in_two_or_four_parts_is_malformed_even_when_it_decodes(raw: str) -> None:
    error = refusal(raw)
    assert isinstance(error, MalformedToken)
    assert str(error) == NOT_THREE_PARTS


@pytest.mark.parametrize("alg", ["none", "NONE", "None"])
def test_alg_none_is_always_rejected(alg: str) -> None:
    error = refusal(make_jwt(claims(), alg=alg), TokenRules(frozenset({"RS256"})))
    assert isinstance(error, DisallowedAlgorithm)
    assert str(error) == UNSIGNED


@pytest.mark.parametrize(
    ("algorithms", "message"),
    [
        (frozenset({"RS256", "none"}), 'the JWT algorithm "none" can never be allowed'),
        (frozenset({"NoNe"}), 'the JWT algorithm "none" can never be allowed'),
        (frozenset(), "at least one JWT algorithm must be allowed"),
    ],
)
def test_alg_none_cannot_even_be_allowed(algorithms: frozenset[str], message: str) -> None:
    with pytest.raises(DisallowedAlgorithm) as caught:
        TokenRules(algorithms)
    assert str(caught.value) == message


@pytest.mark.parametrize("header", [{"typ": "JWT"}, {"alg": 256}, {"alg": None}])
def test_missing_alg_is_rejected(header: dict[str, object]) -> None:
    error = refusal(make_jwt(claims(), header=header))
    assert isinstance(error, DisallowedAlgorithm)
    assert str(error) == UNSIGNED


def test_hs256_needs_to_be_allowed_explicitly() -> None:
    raw = make_jwt(claims(), alg="HS256")
    with pytest.raises(DisallowedAlgorithm, match="pinned at login"):
        parse_access_token(raw, RULES, NOW)
    assert parse_access_token(raw, TokenRules(frozenset({"HS256"})), NOW).alg == "HS256"


def test_an_algorithm_outside_the_pin_is_refused_naming_both_and_the_way_out() -> None:
    error = refusal(make_jwt(claims(), alg="HS256"), TokenRules(frozenset({"RS256", "ES256"})))
    assert isinstance(error, DisallowedAlgorithm)
    assert str(error) == (
        "the server signs tokens with HS256, but only ES256, RS256 is allowed here (the "
        "algorithm pinned at login); if the server really changed, run `cidx-auth login` "
        "again to pin it anew"
    )


@pytest.mark.parametrize("exp", ["soon", True, None, float("inf"), float("nan"), [1], 10**400])
@pytest.mark.parametrize("expires_in", [None, 300.0])
def test_an_exp_claim_present_but_unusable_never_falls_back_to_expires_in(
    exp: object, expires_in: float | None
) -> None:
    """Errata #3: the JWT's exp is the truth; expires_in only for a JWT without one."""
    error = refusal(make_jwt({**claims(), "exp": exp}), expires_in=expires_in)
    assert isinstance(error, UnusableLifetime)
    assert str(error) == NO_EXPIRY


@pytest.mark.parametrize(
    ("iat", "expires_in", "exp"),
    [
        (NOW - 100, 300.0, NOW + 200),  # counted from iat, not from our clock
        (None, 300.0, NOW + 300),  # neither exp nor iat: counted from the server's now
        (None, 1.0, NOW + 1),
        (NOW, 0.5, NOW + 0.5),
        (None, DAY, NOW + DAY),
    ],
)
def test_a_jwt_without_exp_expires_after_expires_in(
    iat: float | None, expires_in: float, exp: float
) -> None:
    token = parse_access_token(make_jwt(claims(iat=iat, exp=None)), RULES, NOW, expires_in)
    assert (token.exp, token.iat) == (exp, iat)


@pytest.mark.parametrize("iat", [NOW, None])
@pytest.mark.parametrize("expires_in", [None, 0.0, -5.0, float("inf"), float("nan")])
def test_a_jwt_without_exp_or_a_usable_expires_in_has_no_expiry(
    iat: float | None, expires_in: float | None
) -> None:
    error = refusal(make_jwt(claims(iat=iat, exp=None)), expires_in=expires_in)
    assert isinstance(error, UnusableLifetime)
    assert str(error) == NO_EXPIRY


def test_expires_in_is_ignored_when_the_jwt_has_exp() -> None:
    assert parse_access_token(make_jwt(claims()), RULES, NOW, expires_in=3600).exp == NOW + 600


@pytest.mark.parametrize(
    ("iat", "exp", "rules", "accepted"),
    [
        (NOW, NOW + DAY, RULES, True),
        (NOW, NOW + DAY + 1, RULES, False),
        (NOW, NOW + DAY + 0.001, RULES, False),
        (None, NOW + DAY, RULES, True),  # no iat: counted from the server's now
        (None, NOW + DAY + 1, RULES, False),
        (NOW - 1000, NOW + DAY - 1000, RULES, True),
        (NOW - 1000, NOW + DAY - 999, RULES, False),  # counted from iat, not from now
        (NOW + 20, NOW + 20 + DAY, RULES, True),
        (NOW, NOW + 600, TokenRules(max_lifetime=600), True),
        (NOW, NOW + 601, TokenRules(max_lifetime=600), False),
    ],
)
def test_a_lifetime_of_a_day_is_accepted_and_a_moment_more_refused(
    iat: float | None, exp: float, rules: TokenRules, accepted: bool
) -> None:
    raw = make_jwt(claims(iat=iat, exp=exp))
    if accepted:
        assert parse_access_token(raw, rules, NOW).exp == exp
    else:
        error = refusal(raw, rules)
        assert isinstance(error, UnusableLifetime)
        assert str(error) == TOO_LONG


@pytest.mark.parametrize(
    ("ahead", "rules", "accepted"),
    [
        (29, RULES, True),
        (30, RULES, True),
        (30.001, RULES, False),
        (31, RULES, False),
        (5, TokenRules(max_future_iat=5), True),
        (6, TokenRules(max_future_iat=5), False),
    ],
)
def test_an_iat_up_to_the_skew_ahead_is_accepted_and_beyond_it_refused(
    ahead: float, rules: TokenRules, accepted: bool
) -> None:
    raw = make_jwt(claims(iat=NOW + ahead, exp=NOW + ahead + 600))
    if accepted:
        assert parse_access_token(raw, rules, NOW).iat == NOW + ahead
    else:
        error = refusal(raw, rules)
        assert isinstance(error, UnusableLifetime)
        assert str(error) == IN_THE_FUTURE


@pytest.mark.parametrize(("exp", "accepted"), [(NOW - 1, False), (NOW, False), (NOW + 1, True)])
def test_a_token_must_expire_after_it_was_issued(exp: float, accepted: bool) -> None:
    raw = make_jwt(claims(iat=NOW, exp=exp))
    if accepted:
        assert parse_access_token(raw, RULES, NOW).lifetime == 1
    else:
        error = refusal(raw)
        assert isinstance(error, UnusableLifetime)
        assert str(error) == BEFORE_ISSUE


@pytest.mark.parametrize(
    ("names", "username"),
    [
        ({"username": "alice", "sub": "bob"}, "alice"),
        ({"sub": "bob"}, "bob"),
        ({"username": 5, "sub": "bob"}, None),
        ({"sub": 5}, None),
        ({}, None),
    ],
)
def test_the_username_comes_from_username_else_sub_and_only_as_text(
    names: dict[str, object], username: str | None
) -> None:
    raw = make_jwt({"iat": NOW, "exp": NOW + 600, **names})
    assert parse_access_token(raw, RULES, NOW).username == username


@pytest.mark.parametrize(("jti", "kept"), [("j-1", "j-1"), (5, None), (None, None)])
def test_the_jti_is_kept_only_as_text(jti: object, kept: str | None) -> None:
    assert parse_access_token(make_jwt(claims(jti=jti)), RULES, NOW).jti == kept


def test_secrets_stay_out_of_repr() -> None:
    raw = make_jwt(claims())
    token = parse_access_token(raw, RULES, NOW)
    session = Session(token, "refresh-secret-value", 0.0, "alice")
    grant = Grant(raw, "refresh-secret-value")
    for text in (repr(token), repr(session), repr(grant)):
        assert raw not in text
        assert "refresh-secret-value" not in text
    assert token.fingerprint not in raw and len(token.fingerprint) == 16


ABSENT = object()
"""A key left out of the stored data altogether."""


def a_session(**fields: object) -> Session:
    token = parse_access_token(make_jwt(claims()), RULES, NOW)
    return Session(token, **fields)  # type: ignore[arg-type]


def stored(**change: object) -> dict[str, object]:
    """A stored session's data, as a store reads it back, with ``change`` applied."""
    data = json.loads(json.dumps(session_to_dict(a_session(refresh_token="r-1"), NOW)))
    data.update(change)
    return {k: v for k, v in data.items() if v is not ABSENT}


def test_a_session_is_stored_in_the_documented_format() -> None:
    session = a_session(refresh_token="r-1", clock_offset=2.5, username="alice",
                        refresh_in_flight=True, refused=True)
    assert session_to_dict(session, NOW + 7) == {
        "version": 1,
        "access_token": session.token.raw,
        "alg": "RS256",
        "expires_at": NOW + 600,
        "issued_at": NOW,
        "jti": "j-1",
        "token_username": "alice",
        "refresh_token": "r-1",
        "clock_offset": 2.5,
        "username": "alice",
        "refresh_in_flight": True,
        "refused": True,
        "stored_at": NOW + 7,
    }


@pytest.mark.parametrize(("in_flight", "refused"), [(False, False), (True, False), (False, True)])
def test_session_round_trips_through_plain_data(in_flight: bool, refused: bool) -> None:
    session = a_session(refresh_token="r-1", clock_offset=2.5, username="alice",
                        refresh_in_flight=in_flight, refused=refused)
    data = json.loads(json.dumps(session_to_dict(session, NOW)))
    assert session_from_dict(data) == session


def test_a_session_stored_before_the_flags_existed_has_them_off() -> None:
    session = session_from_dict(stored(refresh_in_flight=ABSENT, refused=ABSENT))
    assert (session.refresh_in_flight, session.refused) == (False, False)


OPTIONAL_FIELDS: dict[str, Callable[[Session], object]] = {
    "jti": lambda session: session.token.jti,
    "token_username": lambda session: session.token.username,
    "refresh_token": lambda session: session.refresh_token,
    "username": lambda session: session.username,
}


@pytest.mark.parametrize("key", OPTIONAL_FIELDS)
@pytest.mark.parametrize("value", [None, ABSENT, "some-text"])
def test_a_stored_optional_field_may_be_text_null_or_missing(key: str, value: object) -> None:
    read = OPTIONAL_FIELDS[key](session_from_dict(stored(**{key: value})))
    assert read == (None if value is ABSENT else value)


@pytest.mark.parametrize("key", OPTIONAL_FIELDS)
@pytest.mark.parametrize("value", [5, 1.5, True, ["text"], {"text": "x"}])
def test_a_stored_optional_field_of_another_type_is_refused(key: str, value: object) -> None:
    with pytest.raises(MalformedToken) as caught:
        session_from_dict(stored(**{key: value}))
    assert str(caught.value) == f"the stored session has a bad {key}"


@pytest.mark.parametrize("issued_at", [None, ABSENT, NOW - 5, 1_700_000_000])
def test_a_stored_issue_time_may_be_a_number_null_or_missing(issued_at: object) -> None:
    iat = session_from_dict(stored(issued_at=issued_at)).token.iat
    assert iat == (None if issued_at is ABSENT else issued_at)


UNKNOWN_FORMAT = "the stored session has an unknown format"
NO_TOKEN = "the stored session is missing its token or expiry"
BAD_FLAG = "the stored session has a bad flag"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 99}, UNKNOWN_FORMAT),
        ({"version": ABSENT}, UNKNOWN_FORMAT),
        ({"access_token": ABSENT}, NO_TOKEN),
        ({"access_token": 5}, NO_TOKEN),
        ({"expires_at": "x"}, NO_TOKEN),
        ({"expires_at": ABSENT}, NO_TOKEN),
        ({"clock_offset": None}, NO_TOKEN),
        ({"access_token": "not-a-jwt"}, NOT_THREE_PARTS),
        ({"access_token": "a.b.c\n"}, CHARACTERS),
        ({"issued_at": "x"}, "the stored session has a bad issue time"),
        ({"issued_at": True}, "the stored session has a bad issue time"),
        ({"alg": None}, "the stored session has no algorithm"),
        ({"alg": ABSENT}, "the stored session has no algorithm"),
        ({"alg": 5}, "the stored session has a bad alg"),
        ({"refresh_in_flight": 1}, BAD_FLAG),
        ({"refresh_in_flight": None}, BAD_FLAG),
        ({"refused": "yes"}, BAD_FLAG),
        ({"refused": 0}, BAD_FLAG),
    ],
)
def test_damaged_session_data_is_rejected(change: dict[str, object], message: str) -> None:
    with pytest.raises(MalformedToken) as caught:
        session_from_dict(stored(**change))
    assert str(caught.value) == message


@pytest.mark.parametrize("data", [[1, 2], None, "text", {"version": "1"}])
def test_stored_data_that_is_not_a_session_has_an_unknown_format(data: object) -> None:
    with pytest.raises(MalformedToken) as caught:
        session_from_dict(data)
    assert str(caught.value) == UNKNOWN_FORMAT


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
