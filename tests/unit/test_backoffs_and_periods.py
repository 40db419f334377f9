"""The provider's 30 s back-off after a failed proactive renewal, exactly; and that only
a failed renewal sets it."""

from __future__ import annotations

from cidx_auth.domain.errors import ServerUnavailable
from cidx_auth.domain.events import EventKind
from cidx_auth.domain.expiry import TokenState
from tests.unit.conftest import World, make_world


def test_a_failed_proactive_renewal_is_tried_again_exactly_30_s_later(world: World) -> None:
    first = world.provider.get_token()
    world.clock.advance(301)  # stale, valid until 570 s
    world.gateway.fail_next(ServerUnavailable("connection refused", reached=False))
    assert world.provider.get_token() == first
    assert world.gateway.refreshes == 1 and world.events[EventKind.REFRESH_FAILED] == 1
    world.clock.advance(29.9)
    assert world.provider.get_token() == first and world.gateway.refreshes == 1
    world.clock.advance(0.1)  # the back-off is over; the server is back
    assert world.provider.get_token() != first and world.gateway.refreshes == 2


def test_a_successful_renewal_leaves_no_back_off_behind() -> None:
    # A 40 s token is stale after 20 s (half its life), sooner than the 30 s back-off.
    world = make_world(lifetime=40.0)
    tokens = [world.provider.get_token()]  # a login
    for _ in range(3):
        world.clock.advance(20)
        assert world.provider.state() is TokenState.STALE
        tokens.append(world.provider.get_token())  # renewed at once, every time
    assert len(set(tokens)) == 4
    assert (world.gateway.logins, world.gateway.refreshes) == (1, 3)
