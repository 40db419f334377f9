"""Which requests get the CIDX token: only those to the server's own origin (scheme,
host and port, the default port spelled or not), never another port on the same host."""

from __future__ import annotations

import httpx
import pytest

from adapters.httpx_auth import CidxAuth, origin


class Source:
    def get_token(self) -> str:
        return "the-token"

    async def aget_token(self) -> str:
        return "the-token"

    def invalidate(self, token: str) -> None:
        raise AssertionError("nothing was refused")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cidx.test", ("https", "cidx.test", 443)),
        ("https://cidx.test:443/api", ("https", "cidx.test", 443)),
        ("http://cidx.test/", ("http", "cidx.test", 80)),
        ("http://cidx.test:80", ("http", "cidx.test", 80)),
        ("https://cidx.test:8443", ("https", "cidx.test", 8443)),
        ("http://cidx.test:443", ("http", "cidx.test", 443)),
    ],
)
def test_origin_makes_the_default_port_explicit(url: str, expected: tuple[str, str, int]) -> None:
    assert origin(httpx.URL(url)) == expected


@pytest.mark.parametrize(
    ("server", "url", "sent"),
    [
        ("https://cidx.test", "https://cidx.test:443/api/repos", True),
        ("https://cidx.test:443", "https://cidx.test/api/repos", True),
        ("https://cidx.test", "https://cidx.test:8443/api/repos", False),
        ("https://cidx.test:8443", "https://cidx.test/api/repos", False),
        ("https://cidx.test", "http://cidx.test/api/repos", False),
    ],
)
def test_the_token_goes_to_the_servers_origin_only(server: str, url: str, sent: bool) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with httpx.Client(auth=CidxAuth(Source(), server),
                      transport=httpx.MockTransport(answer)) as client:
        client.get(url)
    assert seen[0].headers.get("Authorization") == ("Bearer the-token" if sent else None)
