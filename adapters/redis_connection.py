"""Redis store URLs: checked, printed without secrets, and turned into a client.

A store URL is ``redis://[user@]host[:port][/db]`` or ``rediss://`` for TLS, or, for a
primary that Redis Sentinel manages (and fails over to a replica),
``redis+sentinel://[user@]host[:port][,host[:port]]...[/service[/db]]`` (``rediss+sentinel``
for TLS to the sentinels and the data nodes): the sentinels' addresses (port 26379 by
default) and the service name they monitor (``mymaster`` by default). The
password never rides in a URL that ``login --store`` gets (argv shows in ``ps``) or that
``auth.json`` keeps (it holds no secret): :func:`refuse_password` stops both. It comes
from ``CIDX_STORE_PASSWORD``, or from the file ``CIDX_STORE_PASSWORD_FILE`` names, which
must be a regular file owned by the user (or root) that no group or other user can read
(:func:`store_password`). A ``CIDX_STORE_URL`` in the environment may still carry one,
and then it wins. A URL is never printed as given anyway: :func:`redact_url` keeps the
scheme, host, port and database, and drops the user information and the query (where
redis-py also accepts ``password=``).

The client fails fast: a CLI call that finds Redis down should report it (or fall
back to its cached token) in about a second, not after redis-py's default of ten
retries. :data:`SOCKET_TIMEOUT` bounds connecting and each command, and a dropped
connection is retried :data:`RETRIES` times, which is enough to ride over a
connection that Redis closed while idle (a restart, a failover).

Errors are described by :func:`failure_hint` from their type alone: a redis-py message
may quote what it was sent. :func:`ping` lets ``cidx-auth login --store`` refuse a store
it cannot use before the setting is saved.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

from adapters.file_io import POSIX, check_trusted, read_regular
from cidx_auth.domain.errors import ConfigurationError, StorageError

if TYPE_CHECKING:  # checking a URL needs no redis: the CLI does it before anything else
    import redis

SCHEMES = ("redis", "rediss")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379
DEFAULT_SERVICE = "mymaster"
"""The service name Sentinel's own example configuration monitors."""
MAX_SENTINELS = 16
SOCKET_TIMEOUT = 2.0
RETRIES = 2
HEALTH_CHECK_INTERVAL = 10
"""Seconds a pooled connection may sit idle before it is PINGed before use."""
_MAX_PASSWORD_FILE = 4096


MAX_DATABASE = 2**31 - 1
"""The largest database index Redis's ``SELECT`` takes."""
MAX_STORE_TIMEOUT = 60.0
"""The longest socket timeout a store URL may ask for: a CLI call must fail fast."""
MAX_HEALTH_CHECK_INTERVAL = 3600

STORE_PARAMETERS = ("db", "socket_timeout", "socket_connect_timeout", "health_check_interval")
"""The only query parameters a store URL may carry (besides ``password``, which only
``CIDX_STORE_URL`` may hold): the ones of redis-py's ``from_url`` that change nothing
but where the session lives and how long a call waits. The rest are refused by name: an
``ssl_*`` one would weaken (or bend) TLS verification of the store, and the others are
unknown here, or redis-py would fail on them mid-command."""

_UNSAFE = re.compile("[\x00-\x20\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e"
                     "\u2066-\u2069]")
"""Controls, spaces and bidirectional marks: no URL holds them, and a terminal acts on some."""
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_SERVICE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]{1,253})(?::([0-9]{1,5}))?")


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    """Where a Sentinel-managed store is: the sentinels, the service they monitor, and
    the database on its primary. A sentinel's host is kept as written (an IPv6 address
    without its brackets)."""

    tls: bool
    sentinels: tuple[tuple[str, int], ...]
    service: str
    database: int | None
    """From the path, or else the ``db`` query parameter; None when neither names one (0)."""
    username: str | None

    def shown(self) -> str:
        """The address without user, password or query: safe for messages and logs."""
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        hosts = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                         for host, port in self.sentinels)
        return f"{scheme}://{hosts}/{self.service}/{self.database or 0}"


def sentinel_address(url: str) -> SentinelAddress | None:
    """The parts of a ``redis+sentinel://`` URL; None for any other scheme. A malformed
    one is a :class:`ConfigurationError` naming what is wrong (never the URL's secrets)."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator or scheme.lower() not in SENTINEL_SCHEMES:
        return None
    netloc, _, path = rest.partition("/")
    path = path.partition("?")[0].partition("#")[0]
    netloc = netloc.partition("?")[0].partition("#")[0]
    userinfo, at, hosts = netloc.rpartition("@")
    username = unquote(userinfo.partition(":")[0]) if at else None
    sentinels = []
    for item in hosts.split(","):
        match = _HOST.fullmatch(item)
        port = int(match.group(1)) if match and match.group(1) else SENTINEL_PORT
        host = item.rpartition(":")[0] if match and match.group(1) else item
        if match is None or not 0 < port < 65536 or not _plausible_host(host):
            raise ConfigurationError(
                "each sentinel of a redis+sentinel:// store must be HOST or HOST:PORT, "
                "separated by commas, such as "
                "redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0"
            )
        sentinels.append((host.strip("[]"), port))
    if len(sentinels) > MAX_SENTINELS:
        raise ConfigurationError(f"a redis+sentinel:// store names at most {MAX_SENTINELS} "
                                 "sentinels")
    service, _, database = path.strip("/").partition("/")
    if service and not _SERVICE.fullmatch(service):
        raise ConfigurationError(
            "the Sentinel service name of a redis+sentinel:// store may hold only letters, "
            "digits, '_', '.' and '-' (at most 64), as in redis+sentinel://HOST:26379/mymaster/0"
        )
    if service.isdigit():  # redis://HOST/0 names a database there: not here
        raise ConfigurationError(
            f"a redis+sentinel:// store names the Sentinel service before the database: "
            f"redis+sentinel://HOST:26379/SERVICE/{service}, not a service named {service!r}"
        )
    if database and not _is_database(database):
        raise ConfigurationError(
            f"the Redis database of a redis+sentinel:// store (after the service name) must "
            f"be a number from 0 to {MAX_DATABASE}"
        )
    if not database:
        given = dict(parse_qsl(urlsplit(url.strip()).query)).get("db", "")
        database = given if _is_database(given) else ""
    return SentinelAddress(
        tls=scheme.lower() == "rediss+sentinel",
        sentinels=tuple(sentinels),
        service=service or DEFAULT_SERVICE, database=int(database) if database else None,
        username=username or None,
    )


def _is_database(text: str) -> bool:
    """Whether ``text`` is a Redis database index ``SELECT`` takes."""
    return text.isascii() and text.isdigit() and int(text) <= MAX_DATABASE


def _plausible_host(host: str) -> bool:
    """A bracketed host must be an IPv6 address; any other, a name or an IPv4 address."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    return host.strip(".-") != ""


def check_store_url(url: str) -> str:
    """``url`` stripped, if it is a usable Redis URL; else :class:`ConfigurationError`
    (exit 2). Its query may hold only :data:`STORE_PARAMETERS` (and ``password``, which
    :func:`refuse_password` refuses where the URL is shown or stored), each once, with a
    value in range."""
    url = url.strip()
    if _UNSAFE.search(url):  # not printed: a terminal would act on it
        raise ConfigurationError(
            "the token store URL holds a control character or a space; give it as "
            "redis://[user@]host:port/db"
        )
    sentinel = sentinel_address(url)
    if sentinel is not None:
        _, _, path = url.partition("://")[2].partition("/")
        in_path = "/" in path.partition("?")[0].strip("/")
        _check_parameters(url, has_database=in_path)
        return url
    parts = _split(url)
    if parts is None or parts[0] not in SCHEMES or not parts[1]:
        raise ConfigurationError(
            "the token store must be a redis:// or rediss:// URL with a host, such as "
            "redis://redis.internal:6379/0, or a redis+sentinel:// URL naming the "
            f"sentinels and the service, not {redact_url(url)!r}"
        )
    database = parts[3].strip("/")
    if database and not _is_database(database):
        raise ConfigurationError(f"the Redis database in {redact_url(url)} must be a number "
                                 f"from 0 to {MAX_DATABASE}")
    _check_parameters(url, has_database=bool(database))
    return url


def _check_parameters(url: str, *, has_database: bool) -> None:
    """Every query parameter known, harmless, given once and in range."""
    try:
        pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    except ValueError:
        pairs = [("", "")]
    where = f"the token store URL {redact_url(url)}"
    seen: set[str] = set()
    for name, value in pairs:
        shown = name if _NAME.fullmatch(name) else "a parameter"
        if name == "password":
            continue  # CIDX_STORE_URL may carry it; refuse_password stops it elsewhere
        if name.startswith("ssl"):
            raise ConfigurationError(
                f"{where} sets {shown}, which would weaken or change the TLS verification "
                "of the store; rediss:// always verifies the certificate and the host name"
            )
        if name not in STORE_PARAMETERS:
            raise ConfigurationError(
                f"{where} sets {shown}, which cidx-auth does not accept; a store URL may "
                f"set only {', '.join(STORE_PARAMETERS)}"
            )
        if name in seen or (name == "db" and has_database):
            raise ConfigurationError(f"{where} sets {shown} twice")
        seen.add(name)
        problem = _parameter_problem(name, value)
        if problem:
            raise ConfigurationError(f"{where} sets {shown} to {problem}")


def _parameter_problem(name: str, value: str) -> str | None:
    """What is wrong with ``value`` for the parameter ``name``; None if nothing."""
    if name == "db":
        return None if _is_database(value) else (
            f"something other than a number from 0 to {MAX_DATABASE}")
    if name == "health_check_interval":
        fine = value.isascii() and value.isdigit() and int(value) <= MAX_HEALTH_CHECK_INTERVAL
        return None if fine else (
            f"something other than a whole number of seconds from 0 to "
            f"{MAX_HEALTH_CHECK_INTERVAL}")
    try:  # socket_timeout, socket_connect_timeout
        seconds = float(value) if len(value) <= 20 else math.nan
    except ValueError:
        seconds = math.nan
    if 0 < seconds <= MAX_STORE_TIMEOUT:  # NaN and infinity fail it
        return None
    return f"something other than a number of seconds above 0 and at most {MAX_STORE_TIMEOUT:g}"


def refuse_password(url: str, where: str) -> None:
    """:class:`ConfigurationError` if ``url`` carries a password (``:password@`` or a
    ``password=`` query): the message names the other ways to give it, never the URL."""
    try:
        parts = urlsplit(url.strip())
        password = parts.password is not None or "password" in parse_qs(parts.query)
    except ValueError:
        return  # not a URL: check_store_url says what is wrong with it
    if password:
        raise ConfigurationError(
            f"{where} {redact_url(url)} must not carry the Redis password (argv shows in "
            "`ps`, and auth.json holds no secret): set CIDX_STORE_PASSWORD, or name a file "
            "only you can read (chmod 600) in CIDX_STORE_PASSWORD_FILE, and give the URL "
            "as redis://[user@]host:port/db"
        )


def store_password(environ: Mapping[str, str] | None = None) -> str | None:
    """The Redis password from ``CIDX_STORE_PASSWORD`` or ``CIDX_STORE_PASSWORD_FILE``;
    None if neither is set. A file that is not a regular file of the user's (or root's),
    or that the group or others can read, is refused: :class:`StorageError` (exit 5)."""
    env = os.environ if environ is None else environ
    if env.get("CIDX_STORE_PASSWORD"):
        return env["CIDX_STORE_PASSWORD"]
    if not env.get("CIDX_STORE_PASSWORD_FILE"):
        return None
    path = Path(env["CIDX_STORE_PASSWORD_FILE"])

    def refused(reason: str) -> StorageError:
        return StorageError(
            f"CIDX_STORE_PASSWORD_FILE {path} {reason}; write the Redis password to a "
            "regular file of your own and `chmod 600` it"
        )

    check_trusted(path, "CIDX_STORE_PASSWORD_FILE")  # it and its directory are the user's
    found = read_regular(path, _MAX_PASSWORD_FILE, refuse=refused)
    if found is None:
        raise refused("does not exist")
    data, status = found
    if POSIX and stat.S_IMODE(status.st_mode) & 0o077:
        raise refused(f"has mode {stat.S_IMODE(status.st_mode):03o} (group or others may read it)")
    password = data.decode("utf-8", "surrogateescape").rstrip("\r\n")
    if not password:
        raise refused("is empty")
    return password


def redact_url(url: str) -> str:
    """``url`` without user, password or query: safe for messages and logs."""
    try:
        sentinel = sentinel_address(url)
    except ConfigurationError:
        return "<an unparsable redis+sentinel URL>"
    if sentinel is not None:
        return sentinel.shown()
    parts = _split(url.strip())
    if parts is None:
        return "<an unparsable URL>"
    scheme, host, port, path = parts
    if ":" in host:  # an IPv6 address goes back into its brackets
        host = f"[{host}]"
    return f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"


def _split(url: str) -> tuple[str, str, int | None, str] | None:
    """(scheme, host, port, path) of ``url``; None when the port is not a number."""
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname or "", parts.port, parts.path
    except ValueError:
        return None


def connect(url: str, timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A client for ``url`` (checked first) that fails fast when Redis is unreachable;
    for a ``redis+sentinel://`` URL, one that asks the sentinels where the primary is,
    and asks again after a failover."""
    try:
        import redis
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigurationError(
            "a redis:// token store needs the redis package: pip install 'cidx-auth[redis]'"
        ) from None
    retry = Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.02), RETRIES)
    url = check_store_url(url)
    sentinel = sentinel_address(url)
    if sentinel is not None:
        return _sentinel_client(url, sentinel, timeout, retry)
    # A password in the URL (only CIDX_STORE_URL may hold one) wins over this one.
    return redis.Redis.from_url(
        url,
        password=store_password(),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=retry,
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )


def _sentinel_client(url: str, address: SentinelAddress, timeout: float, retry: Any
                     ) -> redis.Redis:
    """The primary of ``address``'s service, found through its sentinels. The URL's
    parameters apply to the data nodes and the sentinels alike; the password (the URL's,
    else :func:`store_password`) to the data nodes, and ``CIDX_SENTINEL_PASSWORD`` (if
    set) to the sentinels."""
    from redis.sentinel import Sentinel

    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    password = _url_password(url) or options.pop("password", None) or store_password()
    options.pop("password", None)
    sockets: dict[str, Any] = {
        "socket_connect_timeout": float(options.get("socket_connect_timeout", timeout)),
        "socket_timeout": float(options.get("socket_timeout", timeout)),
    }
    # As rediss:// does: the certificate and the host name are always verified.
    tls: dict[str, Any] = ({"ssl": True, "ssl_cert_reqs": "required",
                               "ssl_check_hostname": True} if address.tls else {})
    sentinels = Sentinel(
        list(address.sentinels),
        sentinel_kwargs={**sockets, **tls,
                         "password": os.environ.get("CIDX_SENTINEL_PASSWORD") or None},
        **sockets, **tls,
    )
    database = address.database if address.database is not None else int(
        options.get("db", 0))
    primary: redis.Redis = sentinels.master_for(
        address.service, db=database, username=address.username, password=password,
        retry=retry, health_check_interval=int(options.get("health_check_interval",
                                                            HEALTH_CHECK_INTERVAL)),
        **sockets, **tls,
    )
    return primary


def _url_password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return None if password is None else unquote(password)


def is_sentinel_managed(client: redis.Redis) -> bool:
    """Whether ``client`` finds its primary through Sentinel, where replicas exist by
    design (the token store then has every write under the lock confirmed by one)."""
    from redis.sentinel import SentinelConnectionPool

    return isinstance(client.connection_pool, SentinelConnectionPool)


def describe(client: redis.Redis) -> str:
    """A printable name for the server ``client`` talks to, with no credentials."""
    pool: Any = client.connection_pool
    if is_sentinel_managed(client):
        return f"the primary of Sentinel service {pool.service_name}"
    options = client.connection_pool.connection_kwargs
    if options.get("path"):
        return f"unix://{options['path']}"
    scheme = "rediss" if client.connection_pool.connection_class.__name__.startswith("SSL") \
        else "redis"
    host = str(options.get("host", "localhost"))
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{options.get('port', 6379)}/{options.get('db', 0)}"


def failure_hint(error: Exception) -> str:
    """What a redis-py error means for the user, without its text (which may echo input)."""
    from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError
    from redis.sentinel import MasterNotFoundError

    if isinstance(error, MasterNotFoundError):
        return (f"{type(error).__name__}; no sentinel named a primary for the service: check "
                "the sentinels' addresses, the service name, CIDX_SENTINEL_PASSWORD if they "
                "require one, and that a primary is up")
    if isinstance(error, NoPermissionError):
        return (f"{type(error).__name__}; the store's Redis user may not run a command it "
                "needs: GET, SET, DEL, EVAL/EVALSHA, SCRIPT LOAD, WAIT and PING on the "
                "cidx-auth:* keys (see README, \"Redis user\")")
    if isinstance(error, AuthenticationError | AuthorizationError):
        return (f"{type(error).__name__}; check the store URL's user, and the password in "
                "CIDX_STORE_PASSWORD or CIDX_STORE_PASSWORD_FILE")
    return f"{type(error).__name__}; check that it is running and reachable"


def ping(url: str) -> None:
    """Raise :class:`StorageError` unless Redis at ``url`` answers: ``login --store``
    checks the store before it is saved in the settings."""
    from redis.exceptions import RedisError

    client = connect(url)
    try:
        client.ping()
    except RedisError as error:
        raise StorageError(
            f"the token store Redis at {redact_url(url)} did not answer ({failure_hint(error)})"
        ) from None
    finally:
        client.close()
