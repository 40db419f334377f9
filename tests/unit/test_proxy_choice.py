"""The one proxy decision (issue 20, item 2): proxies never carry clear text.

Expected values are written out by hand, one row per case. The environment is passed
in, so no test depends on the machine's own ``*_PROXY`` variables.
"""

from __future__ import annotations

import os
import urllib.request

import httpx
import pytest

from adapters.http_settings import (
    HttpSettings,
    make_async_client,
    make_client,
    never_sent,
    transport_error,
)
from cidx_auth.domain.errors import ConfigurationError, ServerUnavailable
from cidx_auth.domain.proxy import (
    DIRECT,
    choose_proxy,
    environment_proxies,
    is_remote_plain_http,
    proxy_for,
    shown,
)

PROXY = "http://proxy.test:3128"
SECRET_PROXY = "http://squid-user:pr0xy-pa55@proxy.test:3128"
EVERY = {"HTTP_PROXY": PROXY, "HTTPS_PROXY": PROXY, "ALL_PROXY": PROXY,
         "http_proxy": PROXY, "https_proxy": PROXY, "all_proxy": PROXY}

# (server, environment, plain-http opt-in, proxy used (None: none), refused)
CASES = [
    # a loopback server is never proxied, whatever the environment says
    ("http://127.0.0.1:8000", EVERY, False, None, False),
    ("http://127.9.9.9:8000", EVERY, False, None, False),
    ("http://localhost:8000", EVERY, False, None, False),
    ("http://LOCALHOST:8000", EVERY, False, None, False),
    ("http://[::1]:8000", EVERY, False, None, False),
    ("https://127.0.0.1:8443", EVERY, True, None, False),
    ("https://localhost", {"HTTPS_PROXY": SECRET_PROXY}, False, None, False),
    # which variable, as urllib and httpx read them
    ("https://cidx.test", {"HTTPS_PROXY": PROXY}, False, PROXY, False),
    ("https://cidx.test", {"HTTP_PROXY": PROXY}, False, None, False),
    ("https://cidx.test", {"ALL_PROXY": "socks5://socks.test:1080"}, False,
     "socks5://socks.test:1080", False),
    ("https://cidx.test", {"HTTPS_PROXY": PROXY, "ALL_PROXY": "http://other.test:1"}, False,
     PROXY, False),
    ("https://cidx.test", {"HTTPS_PROXY": "http://upper.test:1", "https_proxy": PROXY}, False,
     PROXY, False),
    ("https://cidx.test", {"HTTPS_PROXY": PROXY, "https_proxy": ""}, False, None, False),
    ("https://cidx.test", {"HTTPS_PROXY": "proxy.test:3128"}, False, PROXY, False),
    ("https://cidx.test", {}, False, None, False),
    # NO_PROXY: the host, a domain it is in, host:port, everything; not another host
    ("https://cidx.test", {"HTTPS_PROXY": PROXY, "NO_PROXY": "cidx.test"}, False, None, False),
    ("https://api.cidx.test", {"HTTPS_PROXY": PROXY, "no_proxy": ".cidx.test"}, False,
     None, False),
    ("https://cidx.test:8443", {"HTTPS_PROXY": PROXY, "NO_PROXY": "cidx.test:8443"}, False,
     None, False),
    ("https://cidx.test", {"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, False, None, False),
    ("https://10.0.0.1:8443", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.1"}, False,
     None, False),
    ("https://[2001:db8::5]:8443", {"HTTPS_PROXY": PROXY, "NO_PROXY": "2001:db8::5"}, False,
     None, False),
    ("https://[2001:db8::5]", {"HTTPS_PROXY": PROXY, "NO_PROXY": "2001:db8::5"}, False,
     None, False),
    ("https://[2001:db8::5]:8443", {"HTTPS_PROXY": PROXY, "NO_PROXY": "2001:db8::6"}, False,
     PROXY, False),
    ("https://cidx.test", {"HTTPS_PROXY": PROXY, "NO_PROXY": "other.test,10.0.0.1"}, False,
     PROXY, False),
    ("https://notcidx.test", {"HTTPS_PROXY": PROXY, "NO_PROXY": "cidx.test"}, False,
     PROXY, False),
    # an https:// server through an http:// proxy: a CONNECT tunnel, TLS end to end
    ("https://cidx.test", {"HTTPS_PROXY": "http://10.1.2.3:3128"}, False,
     "http://10.1.2.3:3128", False),
    # an http:// server: clear text to the proxy, which needs the opt-in unless loopback
    ("http://cidx.test:8000", {"HTTP_PROXY": PROXY}, False, PROXY, True),
    ("http://cidx.test:8000", {"ALL_PROXY": PROXY}, False, PROXY, True),
    ("http://cidx.test:8000", {"HTTP_PROXY": "https://proxy.test:3129"}, False,
     "https://proxy.test:3129", True),
    ("http://cidx.test:8000", {"HTTP_PROXY": PROXY}, True, PROXY, False),
    ("http://cidx.test:8000", {"HTTP_PROXY": "http://127.0.0.1:3128"}, False,
     "http://127.0.0.1:3128", False),
    ("http://cidx.test:8000", {"HTTP_PROXY": PROXY, "NO_PROXY": "cidx.test"}, False,
     None, False),
    ("http://cidx.test:8000", {"HTTPS_PROXY": PROXY}, False, None, False),
    # a CGI script: HTTP_PROXY may be the request's Proxy: header (CVE-2016-1000110)
    ("http://cidx.test:8000", {"HTTP_PROXY": PROXY, "REQUEST_METHOD": "GET"}, True,
     None, False),
    # a URL httpx cannot use as a proxy
    ("https://cidx.test", {"HTTPS_PROXY": "ftp://proxy.test:21"}, False,
     "ftp://proxy.test:21", True),
    ("https://cidx.test", {"HTTPS_PROXY": "http://proxy.test:port"}, False,
     "http://proxy.test:port", True),
]


@pytest.mark.parametrize(("server", "environ", "opt_in", "proxy", "refused"), CASES)
def test_the_proxy_decision(server: str, environ: dict[str, str], opt_in: bool,
                            proxy: str | None, refused: bool) -> None:
    choice = choose_proxy(server, environ, opt_in)
    assert (choice.shown, choice.refusal is not None) == (proxy, refused)
    if refused:
        with pytest.raises(ConfigurationError) as raised:
            proxy_for(server, environ, opt_in)
        assert raised.value.exit_code == 2 and proxy in str(raised.value)
        assert "\n" not in str(raised.value)
    else:
        assert proxy_for(server, environ, opt_in) == proxy


def test_a_refusal_says_what_to_do_and_names_the_variable() -> None:
    message = choose_proxy("http://cidx.test:8000", {"all_proxy": PROXY}, False).refusal
    assert message is not None
    assert "all_proxy" in message and "--allow-plain-http" in message
    assert "https://" in message and "NO_PROXY" in message and "clear text" in message


@pytest.mark.parametrize("environ", [
    {"HTTP_PROXY": SECRET_PROXY},
    {"ALL_PROXY": SECRET_PROXY.replace(":3128", ":port")},  # unusable, and still hidden
    {"HTTP_PROXY": "squid-user:pr0xy-pa55@proxy.test:3128"},
    {"HTTP_PROXY": "http://squid-user:pr0xy-pa55@[proxy.test:3128"},  # no parser takes it
])
def test_userinfo_is_never_in_a_message(environ: dict[str, str]) -> None:
    choice = choose_proxy("http://cidx.test:8000", environ, False)
    assert choice.refusal is not None
    seen = " ".join([choice.refusal, str(choice.shown), repr(choice),
                     repr(HttpSettings("http://cidx.test:8000", environ=environ))])
    assert "pr0xy-pa55" not in seen and "squid-user" not in seen
    assert choice.url is not None and "pr0xy-pa55" in choice.url  # httpx gets it whole


@pytest.mark.parametrize(("url", "expected"), [
    ("http://u:p@proxy.test:3128", "http://proxy.test:3128"),
    ("http://u@proxy.test:3128/", "http://proxy.test:3128/"),
    ("socks5://u:p:q@s.test:1080", "socks5://s.test:1080"),
    ("u:p@proxy.test:3128", "proxy.test:3128"),
    ("http://proxy.test:3128/a@b", "http://…@b"),  # a path, or a password: not shown
    ("http://squid:s3cr#et@proxy.test:3128", "http://…@proxy.test:3128"),
    ("http://squid:s3cr?et@proxy.test:3128", "http://…@proxy.test:3128"),
    ("http://squid:s3/cr@et@proxy.test:3128", "http://…@proxy.test:3128"),
    ("squid:a#b@proxy.test:3128", "…@proxy.test:3128"),
    ("http://proxy.test:3128", "http://proxy.test:3128"),
    ("http://squid:p@ss@proxy.test:3128", "http://proxy.test:3128"),  # up to the last @
    ("http://Xavier:pa55@proxy.test:3128", "http://proxy.test:3128"),
    ("http://squid:a://b@proxy.test:3128", "http://…@proxy.test:3128"),  # the first ://
    ("http://squid:s3/cr/et@proxy.test:3128/", "http://…@proxy.test:3128/"),  # the first /
])
def test_shown_drops_only_the_userinfo(url: str, expected: str) -> None:
    assert shown(url) == expected


@pytest.mark.parametrize(("url", "remote"), [
    ("http://cidx.test:8000", True),
    ("HTTP://cidx.test", True),
    ("http://10.0.0.5", True),
    ("https://cidx.test", False),
    ("http://127.0.0.1:8000", False),
    ("http://localhost:8000", False),
    ("http://[::1]:8000", False),
    ("http://[cidx.test:8000", False),  # not a URL: the HTTP settings say why
    ("cidx.test:8000", False),
])
def test_which_servers_are_remote_plain_http(url: str, remote: bool) -> None:
    assert is_remote_plain_http(url) is remote


ENVIRONMENTS = [
    {},
    {"HTTP_PROXY": "http://a:1", "https_proxy": "http://b:2", "NO_PROXY": "x.test"},
    {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"},
    {"HTTPS_PROXY": "http://upper:1", "https_proxy": ""},
    {"Https_proxy": "http://mixed:1", "ALL_PROXY": "socks5://s:1"},
    {"HTTP_PROXY": "http://a:1", "REQUEST_METHOD": "GET"},
    {"http_proxy": "http://a:1", "REQUEST_METHOD": "GET"},
    {"FTP_PROXY": "http://f:1", "EMPTY_PROXY": ""},
]


@pytest.mark.parametrize("environ", ENVIRONMENTS)
def test_the_environment_is_read_as_the_standard_library_reads_it(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert environment_proxies(environ)[0] == urllib.request.getproxies_environment()


def test_not_a_url_is_left_to_the_http_settings() -> None:
    assert choose_proxy("cidx.test", EVERY, False) is DIRECT
    assert choose_proxy("http://cidx.test:99999", EVERY, False) is DIRECT


# --- every client builder asks the same decision ------------------------------------

def _proxied(client: httpx.Client | httpx.AsyncClient, url: str) -> bool:
    transport = client._transport_for_url(httpx.URL(url))
    return transport is not client._transport


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"])
def test_clients_for_a_loopback_server_ignore_proxies_in_the_environment(
    variable: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``trust_env`` httpx would proxy 127.0.0.1 itself; our clients never do."""
    monkeypatch.setenv(variable, PROXY)
    for url in ("http://127.0.0.1:8000", "https://localhost:8443"):
        settings = HttpSettings(url)
        assert settings.proxy == DIRECT
        with make_client(settings) as client:
            assert not client.trust_env and not _proxied(client, url + "/auth/login")
        client_async = make_async_client(settings)
        assert not client_async.trust_env and not _proxied(client_async, url + "/api/repos")


async def test_clients_for_a_remote_server_use_the_decided_proxy() -> None:
    settings = HttpSettings("https://cidx.test", environ={"HTTPS_PROXY": SECRET_PROXY})
    with make_client(settings) as client:
        assert _proxied(client, "https://cidx.test/auth/login")
    async with make_async_client(settings) as client_async:
        assert _proxied(client_async, "https://cidx.test/api/repos")


async def test_no_client_is_built_for_a_refused_proxy() -> None:
    settings = HttpSettings("http://cidx.test:8000", environ={"HTTP_PROXY": SECRET_PROXY})
    with pytest.raises(ConfigurationError, match=r"proxy\.test:3128"):
        make_client(settings)
    with pytest.raises(ConfigurationError, match=r"proxy\.test:3128"):
        make_async_client(settings)
    allowed = HttpSettings("http://cidx.test:8000", environ={"HTTP_PROXY": SECRET_PROXY},
                           plain_http=True)
    with make_client(allowed) as client:
        assert _proxied(client, "http://cidx.test:8000/auth/login")


def test_a_socks_proxy_without_the_socks_extra_is_a_usage_error() -> None:
    settings = HttpSettings("https://cidx.test", environ={"ALL_PROXY": "socks5://u:p@s.test:1"})
    try:
        import socksio  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigurationError, match=r"httpx\[socks\]") as raised:
            make_client(settings)
        assert "s.test:1 (from ALL_PROXY)" in str(raised.value) and "u:p" not in str(raised.value)
    else:
        assert settings.proxy_url() == "socks5://u:p@s.test:1"


# --- a proxy's failure names the proxy, not the server ------------------------------

REQUEST = httpx.Request("POST", "https://cidx.test/auth/login")


@pytest.mark.parametrize(("exc", "says"), [
    (httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST),
     "could not be reached ([Errno 111] Connection refused) on the way to https://cidx.test"),
    (httpx.ConnectTimeout("timed out", request=REQUEST),
     "timed out on the way to https://cidx.test"),
    (httpx.ProxyError("403 Forbidden", request=REQUEST),
     "would not connect to https://cidx.test (403 Forbidden)"),
])
def test_a_proxy_failure_names_the_proxy(exc: httpx.HTTPError, says: str) -> None:
    settings = HttpSettings("https://cidx.test", environ={"https_proxy": SECRET_PROXY})
    error = transport_error(exc, settings)
    assert isinstance(error, ServerUnavailable) and not error.reached and never_sent(exc)
    assert str(error).startswith("the proxy http://proxy.test:3128 (from https_proxy) ")
    assert says in str(error) and "unset https_proxy" in str(error)
    assert "pr0xy-pa55" not in str(error) and "squid-user" not in str(error)


def test_without_a_proxy_a_failure_still_names_the_server() -> None:
    error = transport_error(httpx.ConnectError("refused", request=REQUEST),
                            HttpSettings("https://cidx.test", environ={}))
    assert str(error).startswith("could not connect to https://cidx.test")
