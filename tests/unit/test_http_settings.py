"""HTTP settings: the user story's numbers, TLS that always verifies, shared error mapping."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from adapters.http_settings import (
    HttpSettings,
    detail_of,
    make_async_client,
    make_client,
    never_sent,
    ssl_context,
    transport_error,
)
from cidx_auth.domain.errors import ConfigurationError, ServerUnavailable

URL = "https://cidx.test"


def test_defaults_are_the_user_storys_numbers() -> None:
    settings = HttpSettings(URL)
    timeout = settings.timeout()
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (10, 30, 10, 5)
    limits = settings.limits()
    assert (limits.max_keepalive_connections, limits.max_connections,
            limits.keepalive_expiry) == (5, 10, 30)
    assert settings.http2 and settings.max_in_flight == 10
    assert (settings.login_path, settings.refresh_path) == ("/auth/login", "/api/auth/refresh")


def test_no_setting_can_turn_verification_off() -> None:
    names = {field.name for field in dataclasses.fields(HttpSettings)}
    assert not names & {"verify", "insecure", "verify_tls", "check_hostname"}
    context = ssl_context(HttpSettings(URL))
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_a_ca_bundle_is_the_only_trust_when_given(tmp_path: Path) -> None:
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    context = ssl_context(HttpSettings(URL, ca_bundle=bundle))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1


@pytest.mark.parametrize("content", [None, b"not a certificate"])
def test_an_unusable_ca_bundle_is_a_configuration_error(tmp_path: Path,
                                                        content: bytes | None) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(ConfigurationError, match="--ca-bundle"):
        ssl_context(HttpSettings(URL, ca_bundle=bundle))


@pytest.mark.parametrize("kwargs", [
    {"base_url": "cidx.test"}, {"base_url": "ftp://cidx.test"}, {"base_url": "https://"},
    {"base_url": URL, "read_timeout": 0}, {"base_url": URL, "max_in_flight": 0},
])
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        HttpSettings(**kwargs)  # type: ignore[arg-type]


def test_clients_carry_the_settings() -> None:
    settings = HttpSettings(URL + "/", read_timeout=2.5)
    with make_client(settings) as http:
        assert http.base_url.host == "cidx.test"
        assert http.timeout.read == 2.5 and http.headers["User-Agent"].startswith("cidx-auth/")
        assert not http.follow_redirects


async def test_async_client_carries_the_settings() -> None:
    async with make_async_client(HttpSettings(URL, connect_timeout=1)) as http:
        assert http.timeout.connect == 1


def test_detail_of_reads_strings_lists_and_falls_back() -> None:
    assert detail_of(httpx.Response(400, json={"detail": "No activated repository"})) == (
        "No activated repository")
    listed = {"detail": [{"msg": "too long", "input": "hunter2"}, "odd"]}
    assert detail_of(httpx.Response(422, json=listed)) == "too long; invalid value"
    located = {"detail": [{"loc": ["body", "query_text"], "msg": "Field required",
                           "input": {"password": "hunter2"}}]}
    assert detail_of(httpx.Response(422, json=located)) == "query_text: Field required"
    assert detail_of(httpx.Response(502, text="<html>")) == "Bad Gateway"
    assert len(detail_of(httpx.Response(500, json={"detail": "x" * 5000}))) == 300


def test_transport_error_mapping() -> None:
    settings = HttpSettings(URL)
    assert isinstance(transport_error(httpx.WriteTimeout("t"), settings), ServerUnavailable)
    assert isinstance(transport_error(httpx.UnsupportedProtocol("x"), settings),
                      ServerUnavailable)
    odd = transport_error(httpx.DecodingError("bad gzip"), settings)
    assert isinstance(odd, ConfigurationError) and URL in str(odd)
    verify = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert "--ca-bundle" in str(transport_error(verify, settings))
    assert never_sent(httpx.ConnectError("x")) and never_sent(httpx.PoolTimeout("x"))
    assert not never_sent(httpx.ReadTimeout("x"))
