"""The numbers decisions.md and the README settle, read from where the code takes them."""

from __future__ import annotations

import pytest

from adapters.http_settings import HttpSettings
from adapters.memory import make_jwt
from adapters.project_layout import ProjectSettings
from cidx_auth.domain.errors import DisallowedAlgorithm
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import TokenRules, parse_access_token

NOW = 1_800_000_000.0


def test_a_waiter_with_nothing_usable_waits_two_deadlines_and_five_seconds() -> None:
    """decisions.md, Deadlines: up to 2D + 5 s for the lock (65 s with D = 30 s)."""
    assert Rules().lock_wait == 65.0
    assert Rules(auth_deadline=10.0).lock_wait == 25.0


def test_an_api_call_may_take_sixty_seconds_and_an_auth_call_thirty() -> None:
    """README: one overall deadline per API call (60 s) and per login or refresh (D)."""
    settings = HttpSettings(base_url="https://cidx.example.com")
    assert (settings.api_deadline, settings.auth_deadline) == (60.0, 30.0)


FIXED_LIST = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
              "ES256", "ES384", "ES512", "EdDSA"]
"""decisions.md, Algorithms: what the first login may pin."""


@pytest.mark.parametrize("alg", FIXED_LIST)
def test_before_the_first_pin_every_algorithm_of_the_fixed_list_is_accepted(alg: str) -> None:
    unpinned = ProjectSettings(server_url="https://cidx.example.com")
    raw = make_jwt({"exp": NOW + 600, "iat": NOW}, alg=alg)
    token = parse_access_token(raw, TokenRules(frozenset(unpinned.algorithms)), NOW)
    assert token.alg == alg


@pytest.mark.parametrize("alg", ["none", "None", "HS1", "RS128", "EdDSA448"])
def test_before_the_first_pin_nothing_else_is(alg: str) -> None:
    unpinned = ProjectSettings(server_url="https://cidx.example.com")
    raw = make_jwt({"exp": NOW + 600, "iat": NOW}, alg=alg)
    with pytest.raises(DisallowedAlgorithm):
        parse_access_token(raw, TokenRules(frozenset(unpinned.algorithms)), NOW)
