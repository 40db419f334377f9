"""Store and server URLs are checked where they enter (issue 20, item 5): a store URL
sets only harmless redis-py parameters, in range; a server URL holds nothing httpx
would refuse mid-command. Each refusal is a usage error (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.cidx_client_files import read_remote_config
from adapters.http_settings import HttpSettings
from adapters.project_layout import ProjectSettings, check_server_url, server_url_problem
from adapters.redis_connection import STORE_PARAMETERS, check_store_url
from cidx_auth.domain.errors import ConfigurationError


@pytest.mark.parametrize("url", [
    "redis://h:6379/0", "rediss://h:6380/2", "redis://h", "redis://h/2147483647",
    "redis://h?db=3", "redis://h/1?socket_timeout=0.5&socket_connect_timeout=60",
    "rediss://h/0?health_check_interval=0", "redis://h/0?health_check_interval=3600",
    "redis://h/0?password=only-CIDX_STORE_URL-may",
])
def test_a_store_url_with_harmless_parameters_in_range_is_accepted(url: str) -> None:
    assert check_store_url(url) == url


def test_the_accepted_parameters_are_these_four() -> None:
    assert STORE_PARAMETERS == (
        "db", "socket_timeout", "socket_connect_timeout", "health_check_interval")


@pytest.mark.parametrize(("url", "message"), [
    ("redis://h/0?foo=bar", "sets foo, which cidx-auth does not accept"),
    ("rediss://h/0?ssl_cert_reqs=none&ssl_check_hostname=false",
     "sets ssl_cert_reqs, which would weaken or change the TLS verification"),
    ("rediss://h/0?ssl_check_hostname=false", "sets ssl_check_hostname, which would weaken"),
    ("rediss://h/0?%73sl_cert_reqs=none", "sets ssl_cert_reqs, which would weaken"),
    ("rediss://h/0?ssl_ca_certs=/tmp/x", "sets ssl_ca_certs, which would weaken"),
    ("redis://h/0?max_connections=1", "sets max_connections, which cidx-auth does not"),
    ("redis://h/0?retry_on_timeout=yes", "sets retry_on_timeout, which"),
    ("redis://h/0?protocol=3", "sets protocol, which"),
    ("redis://h/0?username=bob", "sets username, which"),
    ("redis://h/0?connection_class=x", "sets connection_class, which"),
    ("redis://h/0?foo", "sets foo, which"),
    ("redis://h/0?%1b%5b31m=1", "sets a parameter, which"),  # a name is shown only if plain
    ("redis://h/0?db=1", "sets db twice"),
    ("redis://h?db=1&db=2", "sets db twice"),
    ("redis://h?socket_timeout=1&socket_timeout=2", "sets socket_timeout twice"),
    ("redis://h?db=-1", "sets db to something other than a number from 0 to 2147483647"),
    ("redis://h?db=2147483648", "sets db to something other"),
    ("redis://h?db=", "sets db to something other"),
    ("redis://h?socket_timeout=0", "sets socket_timeout to something other than a number"),
    ("redis://h?socket_timeout=60.5", "sets socket_timeout to something other"),
    ("redis://h?socket_timeout=nan", "sets socket_timeout to something other"),
    ("redis://h?socket_timeout=inf", "sets socket_timeout to something other"),
    ("redis://h?socket_connect_timeout=-1", "sets socket_connect_timeout to something"),
    ("redis://h?socket_connect_timeout=" + "1" * 5000, "sets socket_connect_timeout to"),
    ("redis://h?health_check_interval=3601", "sets health_check_interval to something"),
    ("redis://h?health_check_interval=1.5", "sets health_check_interval to something"),
    ("redis://h/99999999999", "database in redis://h/99999999999 must be a number from 0"),
    ("redis://h/\uff11", "database"),
    ("redis://h\x01/0", "holds a control character or a space"),
    ("redis://h/0?db\x00=1", "holds a control character or a space"),
])
def test_a_store_url_with_anything_else_is_a_usage_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")) as refused:
        check_store_url(url)
    assert refused.value.exit_code == 2
    assert "none" not in str(refused.value) and "\x1b" not in str(refused.value)


GOOD_SERVERS = ["https://cidx.example.com", "http://127.0.0.1:8000/prefix/", "https://[::1]:443",
                "https://müller.de", "https://xn--mller-kva.de", "https://10.0.0.1"]


@pytest.mark.parametrize("url", GOOD_SERVERS)
def test_a_good_server_url_has_no_problem(url: str) -> None:
    assert server_url_problem(url) is None
    check_server_url(url, "--server")
    assert ProjectSettings(url).server_url == url
    assert HttpSettings(url).base_url == url


BAD_SERVERS = [
    ("https://h/a\x01b", "holds a control character, a space or an invisible or bidirectional"),
    ("https://h/a\x7fb", "holds a control character"),
    ("https://h/a\x85b", "holds a control character"),
    ("https://h/a\nX-Injected: 1", "holds a control character"),
    ("https://h/a b", "holds a control character, a space"),
    ("https://h/\u202egnp", "bidirectional mark"),
    ("https://cidx.example.com/\u200b", "invisible"),  # zero-width space (Cf)
    ("https://cidx.example.com/\u2060", "invisible"),  # word joiner (Cf)
    ("https://cidx.exa\u00admple.com/", "invisible"),  # soft hyphen (Cf)
    ("https://h/\ufeff", "invisible"), ("https://h/\u061c", "invisible"),
    ("https://h/a\u3000b", "a space"), ("https://h/a\u2028b", "invisible"),
    ("https://h?q=\x00", "holds a control character"),
    ("https://h:x/", "cannot be read as a URL"),
    ("https://h:99999/", "cannot be read as a URL"),
    ("https://[::1/", "cannot be read as a URL"),
    ("https:///path", "has no host"),
    ("https://h:0/", "has port 0"),
    ("https://999.1.1.1/", "looks like an IPv4 address but is not one"),
    ("https://xn--zz.com/", "not a valid international domain name"),
    ("https://a.xn--zz.com/", "not a valid international domain name"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_SERVERS)
def test_a_bad_server_url_is_refused_wherever_it_enters(url: str, problem: str) -> None:
    found = server_url_problem(url)
    assert found is not None and problem in found
    for refuse in (lambda: check_server_url(url, "--server"), lambda: ProjectSettings(url)):
        with pytest.raises(ConfigurationError) as refused:
            refuse()
        assert refused.value.exit_code == 2 and problem in str(refused.value)
        assert url not in str(refused.value)
    with pytest.raises(ConfigurationError):  # what a library user builds is checked too
        HttpSettings(url)


@pytest.mark.parametrize(("url", "problem"), BAD_SERVERS)
def test_a_remote_config_with_a_bad_server_url_is_refused(
    tmp_path: Path, url: str, problem: str
) -> None:
    directory = tmp_path / ".code-indexer"
    directory.mkdir(mode=0o700)
    (directory / ".remote-config").write_text(json.dumps(
        {"mode": "remote", "server_url": url, "username": "alice"}))
    with pytest.raises(ConfigurationError) as refused:
        read_remote_config(directory)
    assert "has a server_url that " in str(refused.value) and problem in str(refused.value)
    assert url not in str(refused.value)


def test_the_old_wording_stays_for_a_scheme_and_for_userinfo() -> None:
    with pytest.raises(ConfigurationError, match="must start with https://"):
        ProjectSettings("ftp://h")
    with pytest.raises(ConfigurationError, match="user name or password"):
        ProjectSettings("https://u:p@h")
