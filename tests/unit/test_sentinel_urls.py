"""The ``redis+sentinel://`` store URL: the sentinels, the service, the database; checked
where it enters, printed without secrets, refused with the form to give instead."""

from __future__ import annotations

import re
from typing import Any

import pytest

from adapters.redis_connection import (
    DEFAULT_SERVICE,
    SENTINEL_PORT,
    SentinelAddress,
    check_store_url,
    redact_url,
    refuse_password,
    sentinel_address,
)
from cidx_auth.domain.errors import ConfigurationError


@pytest.mark.parametrize(("url", "address"), [
    ("redis+sentinel://s1:26380,s2,10.0.0.3:5000/cidx/2",
     SentinelAddress(False, (("s1", 26380), ("s2", SENTINEL_PORT), ("10.0.0.3", 5000)),
                     "cidx", 2, None)),
    ("rediss+sentinel://bob@s1", SentinelAddress(True, (("s1", SENTINEL_PORT),),
                                                 DEFAULT_SERVICE, None, "bob")),
    ("redis+sentinel://bob:pw@[::1]:26379,[fe80::1]/my-svc.1?socket_timeout=1",
     SentinelAddress(False, (("::1", 26379), ("fe80::1", SENTINEL_PORT)), "my-svc.1", None,
                     "bob")),
    ("redis+sentinel://bob%40corp@s1/svc?db=4",
     SentinelAddress(False, (("s1", SENTINEL_PORT),), "svc", 4, "bob@corp")),
    ("REDIS+SENTINEL://h/svc/", SentinelAddress(False, (("h", SENTINEL_PORT),), "svc", None,
                                               None)),
])
def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database(
    url: str, address: SentinelAddress
) -> None:
    assert sentinel_address(url) == address
    assert check_store_url(url) == url


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h", "sentinel://h/svc", "h:1"])
def test_other_urls_are_not_sentinel_urls(url: str) -> None:
    assert sentinel_address(url) is None


def test_a_sentinel_url_is_shown_without_user_password_or_query() -> None:
    url = "rediss+sentinel://bob:hunter2@s1:1,[::1]:2/svc/3?password=hunter3&db=4"
    assert redact_url(url) == "rediss+sentinel://s1:1,[::1]:2/svc/3"
    assert redact_url("redis+sentinel://s1") == "redis+sentinel://s1:26379/mymaster/0"
    assert redact_url("redis+sentinel://a:b:c/svc") == "<an unparsable redis+sentinel URL>"
    assert redact_url("redis+sentinel://s1/svc?db=4") == "redis+sentinel://s1:26379/svc/4"


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel:///svc", "each sentinel of a redis+sentinel:// store must be HOST or"),
    ("redis+sentinel://s1,,s2/svc", "must be HOST or HOST:PORT, separated by commas"),
    ("redis+sentinel://s1:0/svc", "must be HOST or HOST:PORT"),
    ("redis+sentinel://s1:65536/svc", "must be HOST or HOST:PORT"),
    ("redis+sentinel://s1:x/svc", "must be HOST or HOST:PORT"),
    ("redis+sentinel://" + ",".join(["s"] * 17) + "/svc", "names at most 16 sentinels"),
    ("redis+sentinel://s1/sv%20c", "service name of a redis+sentinel:// store may hold only"),
    ("redis+sentinel://s1/" + "s" * 65, "service name"),
    ("redis+sentinel://s1/svc/x", "database of a redis+sentinel:// store (after the service"),
    ("redis+sentinel://s1/0", "names the Sentinel service before the database: "
     "redis+sentinel://HOST:26379/SERVICE/0, not a service named '0'"),
    ("redis+sentinel://[1.2.3.4]/svc", "must be HOST or HOST:PORT"),
    ("redis+sentinel://[:]:1/svc", "must be HOST or HOST:PORT"),
    ("redis+sentinel://-/svc", "must be HOST or HOST:PORT"),
    ("redis+sentinel://s1/svc/2147483648", "must be a number from 0 to 2147483647"),
    ("redis+sentinel://s1/svc/1?db=2", "sets db twice"),
    ("redis+sentinel://s1/svc?ssl_cert_reqs=none", "would weaken or change the TLS"),
    ("redis+sentinel://s1/svc?sentinel_kwargs=x", "which cidx-auth does not accept"),
])
def test_a_malformed_sentinel_url_is_a_usage_error_naming_the_form(
    url: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as refused:
        check_store_url(url)
    assert refused.value.exit_code == 2


def test_a_password_in_a_sentinel_url_is_refused_where_it_would_be_shown_or_kept() -> None:
    with pytest.raises(ConfigurationError, match="must not carry the Redis password") as refused:
        refuse_password("redis+sentinel://bob:hunter2@s1:1,s2:2/svc", "--store")
    assert "hunter2" not in str(refused.value)
    assert "redis+sentinel://s1:1,s2:2/svc/0" in str(refused.value)
    refuse_password("redis+sentinel://bob@s1:1,s2:2/svc", "--store")  # no password: fine


def test_a_sentinel_client_gets_each_password_and_the_urls_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapters.redis_connection import connect, describe

    monkeypatch.setenv("CIDX_STORE_PASSWORD", "data-secret")
    monkeypatch.setenv("CIDX_SENTINEL_PASSWORD", "sentinel-secret")
    client = connect("rediss+sentinel://bob@s1:1,s2:2/svc?db=3&socket_timeout=0.5")
    pool: Any = client.connection_pool
    data = pool.connection_kwargs
    assert (pool.service_name, data["db"], data["username"]) == ("svc", 3, "bob")
    assert (data["password"], data["socket_timeout"]) == ("data-secret", 0.5)
    assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    watcher = sentinels[0].connection_pool.connection_kwargs
    assert (watcher["password"], watcher["socket_timeout"]) == ("sentinel-secret", 0.5)
    assert (watcher["ssl_cert_reqs"], watcher["ssl_check_hostname"]) == ("required", True)
    assert describe(client) == "the primary of Sentinel service svc"
    monkeypatch.delenv("CIDX_SENTINEL_PASSWORD")
    plain: Any = connect("redis+sentinel://s1/svc/7").connection_pool
    assert plain.connection_kwargs["db"] == 7
    assert plain.connection_class.__name__ == "SentinelManagedConnection"
    assert plain.sentinel_manager.sentinels[0].connection_pool.connection_kwargs.get(
        "password") is None
