"""Proxies never carry clear text (issue 20, item 2), against a real proxy socket.

The "proxy" is a socket server on 127.0.0.1 that records every byte it receives, answers
``502`` and closes: it never forwards anything, so nothing leaves the machine. With every
proxy variable pointing at it, a login and an API call to the loopback reference server
succeed and the proxy receives nothing; a control shows it does hear a client that
trusts the environment (as ours did). A non-loopback https:// server is reached through
it (a CONNECT, nothing of the login in it), and its refusal names the proxy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from adapters.http_settings import HttpSettings
from adapters.httpx_gateway import HttpxGateway
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import ServerUnavailable
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.integration.http_support import PASSWORD, build
from tests.integration.recording_proxy import (
    PROXY_PASSWORD,
    PROXY_USER,
    VARIABLES,
    RecordingProxy,
    recording_proxy,
)


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    with recording_proxy() as running:
        yield running


@pytest.fixture(scope="module", params=["http", "https"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with RunningServer(ServerConfig(users={"alice": PASSWORD}),
                       tls=request.param == "https") as running:
        yield running


@pytest.fixture
def every_proxy_variable(proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("every_proxy_variable")
def test_a_loopback_server_is_never_proxied(server: RunningServer,
                                            proxy: RecordingProxy) -> None:
    assert server.url.startswith(("http://127.0.0.1:", "https://127.0.0.1:"))
    logins_before = server.stats()["totals"].get("logins", 0)
    stack = build(server)
    try:
        stack.provider.get_token()  # a login: the password crosses the wire
        with stack.client() as client:
            assert "repositories" in client.repos()  # the bearer token crosses it
    finally:
        stack.close()
    assert server.stats()["totals"].get("logins", 0) == logins_before + 1  # went direct
    assert (len(proxy.received), proxy.connections) == (0, 0)


@pytest.mark.usefixtures("every_proxy_variable")
def test_control_a_client_that_trusts_the_environment_reaches_the_proxy(
    server: RunningServer, proxy: RecordingProxy,
) -> None:
    """What the client did before: httpx's own reading of the environment proxies
    127.0.0.1 too, so the recording proxy is where a leak would show."""
    trusting = httpx.Client(base_url=server.url, verify=server.verify(), trust_env=True)
    with trusting as client, contextlib.suppress(httpx.ProxyError):  # https: CONNECT refused
        client.get("/health")
    assert proxy.connections == 1 and len(proxy.received) > 0
    assert f"127.0.0.1:{server.port}".encode() in bytes(proxy.received)


def test_a_remote_https_server_goes_through_the_proxy_and_its_refusal_names_it(
    proxy: RecordingProxy,
) -> None:
    """Nothing leaves the machine: the proxy is asked for a tunnel and refuses it; the
    login's body never leaves this process, as it would only go inside the tunnel."""
    settings = HttpSettings("https://cidx.invalid", environ={"HTTPS_PROXY": proxy.url})
    gateway = HttpxGateway(settings)
    try:
        with pytest.raises(ServerUnavailable) as refused:
            gateway.login(Credentials("alice", PASSWORD))
    finally:
        gateway.close()
    message = str(refused.value)
    assert message.startswith(f"the proxy {proxy.shown} (from HTTPS_PROXY) would not "
                              "connect to https://cidx.invalid (502 Bad Gateway)")
    assert PROXY_PASSWORD not in message and PROXY_USER not in message
    assert not refused.value.reached and refused.value.exit_code == 4
    sent = bytes(proxy.received)
    assert sent.startswith(b"CONNECT cidx.invalid:443 HTTP/1.1\r\n")
    assert PASSWORD.encode() not in sent and b"/auth/login" not in sent
