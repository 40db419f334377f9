"""TLS that always verifies, and HTTP/2 negotiated when the server offers it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from adapters.http_settings import HttpSettings, make_client
from adapters.httpx_auth import CidxAuth
from adapters.httpx_gateway import HttpxGateway
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import ConfigurationError
from refserver.config import ServerConfig
from refserver.runner import RunningServer
from tests.integration.http_support import PASSWORD, build

pytestmark = pytest.mark.slow
ALICE = Credentials("alice", PASSWORD)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with RunningServer(ServerConfig(users={"alice": PASSWORD}), tls=True) as running:
        yield running


def test_a_server_signed_by_an_unknown_ca_is_refused(server: RunningServer) -> None:
    gateway = HttpxGateway(HttpSettings(server.url))  # the system CAs only
    with pytest.raises(ConfigurationError, match=r"not trusted.*--ca-bundle"):
        gateway.login(ALICE)
    gateway.close()
    assert server.stats()["totals"]["logins"] == 0


def test_a_ca_bundle_of_another_ca_is_refused(server: RunningServer, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    gateway = HttpxGateway(HttpSettings(server.url, ca_bundle=other))
    with pytest.raises(ConfigurationError, match="--ca-bundle"):
        gateway.login(ALICE)
    gateway.close()


def test_the_configured_ca_is_accepted_and_http2_is_negotiated(server: RunningServer) -> None:
    stack = build(server)
    with make_client(stack.settings, auth=CidxAuth(stack.provider, stack.settings.server)) as http:
        response = http.post("/api/query", json={"query_text": "refresh",
                                                 "repository_alias": "backend"})
    stack.close()
    assert response.status_code == 200 and response.http_version == "HTTP/2"


def test_the_api_client_works_over_tls(server: RunningServer) -> None:
    stack = build(server)
    with stack.client() as cidx:
        assert cidx.health()["status"] == "healthy"
        answer = cidx.query("refresh", "backend", limit=2)
    stack.close()
    # The reference server's two best canned hits, from the repository asked for.
    assert answer.total_results == 2
    assert [hit.file_path for hit in answer] == ["src/auth/refresh.py", "src/auth/login.py"]
    assert {hit.repository_alias for hit in answer} == {"backend"}


def test_http1_when_http2_is_not_on_offer() -> None:
    # A plain-HTTP server has no ALPN to offer h2 in: httpx falls back to HTTP/1.1.
    with RunningServer(ServerConfig(users={"alice": PASSWORD})) as plain, \
            make_client(HttpSettings(plain.url)) as http:
        response = http.get("/health")
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"


def test_http2_can_be_turned_off(server: RunningServer) -> None:
    settings = HttpSettings(server.url, ca_bundle=server.ca_file, http2=False)
    with make_client(settings) as http:
        assert http.get("/health").http_version == "HTTP/1.1"


def test_ssl_cert_file_is_trusted_when_no_ca_bundle_is_set(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README: without --ca-bundle the context is OpenSSL's default, which reads the file
    # SSL_CERT_FILE names in place of the system's CA file.
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    before = server.stats()["totals"]["logins"]
    gateway = HttpxGateway(HttpSettings(server.url))
    gateway.login(ALICE)
    gateway.close()
    assert server.stats()["totals"]["logins"] == before + 1


def test_a_ca_bundle_is_the_only_trust_and_ssl_cert_file_adds_nothing_to_it(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))  # the right CA, but ...
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    gateway = HttpxGateway(HttpSettings(server.url, ca_bundle=other))  # ... --ca-bundle wins
    with pytest.raises(ConfigurationError, match="not trusted"):
        gateway.login(ALICE)
    gateway.close()
