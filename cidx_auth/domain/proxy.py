"""Which proxy carries a server's traffic, if any, and whether it may (issue 20, item 2).

One decision, asked by every HTTP client builder, by the commands before they send
anything, and by ``status``, which shows it:

- a loopback server (``localhost``, 127.0.0.0/8, ``::1``) is never proxied, whatever
  the environment says: the password would otherwise leave the machine, to the proxy;
- otherwise the proxy is the one the environment names, read as ``urllib`` and httpx
  read it: ``HTTPS_PROXY`` for an ``https://`` server, ``HTTP_PROXY`` for an ``http://``
  one, else ``ALL_PROXY``; each also in lower case, which wins; ``NO_PROXY`` honoured
  (``urllib.request.proxy_bypass_environment`` matches it);
- an ``http://`` server is clear text end to end, so the plain-http rule applies to the
  proxy as the next hop: a proxy that is not loopback needs the user's opt-in
  (``login --allow-plain-http``), as the server itself does. An ``https://`` server
  through any proxy is fine: the proxy tunnels TLS it cannot read (CONNECT).

A proxy URL may hold a user and password (``http://user:pass@proxy:3128``): it is given
to httpx as it is, and shown (messages, ``status``) only without them (:func:`shown`).

Standard library only, the environment passed in. What the cold ``status`` path pays:
nothing beyond this module while no proxy variable is set (``urllib.request`` and
``ipaddress`` load only when one is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cidx_auth.domain.errors import ConfigurationError

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
"""The proxy URLs httpx can use."""


@dataclass(frozen=True, slots=True)
class ProxyChoice:
    """The proxy a server's traffic goes through: none (``url`` None), one, or one that
    may not be used (``refusal`` says why, in a message that names no secret)."""

    url: str | None = field(default=None, repr=False)
    """As the environment gives it, userinfo included: for httpx only, never shown."""
    source: str | None = None
    """The variable it came from, as spelt there (``HTTPS_PROXY``, ``all_proxy``)."""
    refusal: str | None = None

    @property
    def shown(self) -> str | None:
        """The proxy as messages and ``status`` name it: without any userinfo."""
        return None if self.url is None else shown(self.url)

    def use(self) -> str | None:
        """The proxy URL to give httpx (None: connect directly); a refused one raises
        :class:`ConfigurationError` (exit 2), before any request."""
        if self.refusal is not None:
            raise ConfigurationError(self.refusal)
        return self.url


DIRECT = ProxyChoice()


def proxy_for(server_url: str, environ: Mapping[str, str],
              plain_http_allowed: bool) -> str | None:
    """The proxy URL for ``server_url`` (None: none), or :class:`ConfigurationError`
    when a plain-http server's traffic would cross a proxy beyond this machine without
    the user's opt-in. See :func:`choose_proxy`."""
    return choose_proxy(server_url, environ, plain_http_allowed).use()


def choose_proxy(server_url: str, environ: Mapping[str, str],
                 plain_http_allowed: bool) -> ProxyChoice:
    """The proxy decision for ``server_url`` under ``environ`` (see the module)."""
    try:
        parts = urlsplit(server_url)
        scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
    except ValueError:  # not a URL: the HTTP settings refuse it, with the reason
        return DIRECT
    if scheme not in ("http", "https"):
        return DIRECT
    proxies, names = environment_proxies(environ)
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return DIRECT
    source = names[scheme if proxies.get(scheme) else "all"]
    if is_loopback(host) or _bypassed(host, port, proxies):
        return DIRECT
    if "://" not in url:  # "proxy:3128", as httpx and urllib read it
        url = f"http://{url}"
    choice = ProxyChoice(url, source)
    try:
        proxy = urlsplit(url)
        usable = proxy.scheme.lower() in PROXY_SCHEMES and bool(proxy.hostname)
        _ = proxy.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        usable = False
    if not usable:
        return ProxyChoice(url, source, (
            f"the proxy {choice.shown} (from {source}) is not a proxy URL cidx-auth can "
            f"use (http://, https://, socks5://, with a host); fix {source} or unset it"))
    if scheme == "http" and not plain_http_allowed and not is_loopback(proxy.hostname or ""):
        return ProxyChoice(url, source, (
            f"the proxy {choice.shown} (from {source}) would carry the password and tokens "
            f"for {shown(server_url)}, plain http, in clear text: cidx-auth will not send "
            "them through it. Use the server's https:// URL, unset "
            f"{source} (or add the server's host to NO_PROXY), or opt in with "
            "`cidx-auth login --server URL --allow-plain-http`"))
    return choice


def environment_proxies(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The ``*_proxy`` variables as ``urllib.request.getproxies_environment`` reads
    them (``{"https": url, "no": hosts, ...}``), from ``environ`` rather than
    ``os.environ``; and which variable each came from. A lower-case name wins over its
    upper-case twin, an empty lower-case one removes it, and ``HTTP_PROXY`` is ignored
    in a CGI script (``REQUEST_METHOD`` set: the request's ``Proxy:`` header becomes
    that variable, CVE-2016-1000110). A test holds this to the standard library's."""
    proxies: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in environ.items():
        key = name.lower()
        if value and key.endswith("_proxy"):
            proxies[key[:-6]], names[key[:-6]] = value, name
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):  # lower case only (as spelt): these win
            key = name.lower()[:-6]
            if value:
                proxies[key], names[key] = value, name
            else:
                proxies.pop(key, None)
    return proxies, names


def _bypassed(host: str, port: int | None, proxies: Mapping[str, str]) -> bool:
    """Whether ``NO_PROXY`` names ``host`` (matched by the standard library)."""
    if not proxies.get("no"):
        return False
    # undocumented, but the one NO_PROXY matcher urllib itself uses (not in typeshed)
    from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

    # urllib matches the host alone and host:port (an IPv6 address too: it splits the
    # port off at the last colon, and tries the whole as well)
    where = host if port is None else f"{host}:{port}"
    return bool(proxy_bypass_environment(where, dict(proxies)))


def shown(url: str) -> str:
    """``url`` without ``user:password@``: how a proxy or server is named to people.
    Cut by hand, not parsed, so that even a URL no parser accepts loses its secret. An
    ``@`` after the first ``/``, ``?`` or ``#`` may end a password written unescaped
    (``squid:s3cr#et@proxy``), or sit in a path: all up to the last ``@`` is then left
    out, marked ``…@``, since which it is cannot be told."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
    if "@" in rest[:end]:
        return f"{scheme}{sep}{rest[:end].rpartition('@')[2]}{rest[end:]}"
    if "@" in rest:
        return f"{scheme}{sep}…@{rest.rpartition('@')[2]}"
    return url


def is_remote_plain_http(url: str) -> bool:
    """Whether ``url`` is ``http://`` to a host other than localhost, 127/8 or ::1."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # not a URL at all: the HTTP settings say so, with the reason
        return False
    return parts.scheme == "http" and not is_loopback(host)


def is_loopback(host: str) -> bool:
    """``localhost``, an address in 127.0.0.0/8, or ``::1`` (as ``urlsplit`` gives a
    host: lower case, IPv6 without brackets)."""
    if host.lower() == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
