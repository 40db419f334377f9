"""Where a project keeps its cidx-auth files, and its plain settings.

Everything lives in ``<project>/.code-indexer/`` (directory 0700, files 0600)::

    auth.json          settings, plain JSON (no secrets)
    .token             the session, encrypted          (adapters.file_token_store)
    .token.lock        the token lock, never deleted   (adapters.file_lock)
    .creds             username and password, encrypted
    .state             breaker state and counters, plain JSON
    .state.lock        the state lock, never deleted

**A project the CIDX client set up** (``cidx init --remote``) already holds the client's
own ``.creds`` and ``.token`` (another format, another key), beside ``.remote-config``.
There every cidx-auth file but ``auth.json`` takes a name of its own, so neither program
ever overwrites the other's: ``.cidx-auth.token``, ``.cidx-auth.token.lock``,
``.cidx-auth.creds``, ``.cidx-auth.state``, ``.cidx-auth.state.lock``. The rule: own names
when ``.remote-config`` is there, or when cidx-auth's own-named files already are (so a
project keeps its names if ``.remote-config`` is removed later).

``auth.json``::

    {"server_url": "https://cidx.example.com", "username": "alice",
     "allowed_algorithms": ["HS256"], "ca_bundle": null, "ca_bundle_sha256": null,
     "store_url": null, "plain_http": false, "mac": "5f0c..."}

``mac`` signs every other field under a key derived from the per-user secret and the
project's path (:mod:`adapters.settings_seal`): settings change only through
``cidx-auth login``, and a hand-edited, copied or unsigned file is refused (exit 2).
``ca_bundle_sha256`` pins the CA bundle by its content. No field holds a secret: a
server URL with ``user:pass@`` and a store URL with a password are refused.

``allowed_algorithms`` is the algorithm pin: null until the first login, which pins the
algorithm of the token it got (or the ones given with ``login --allow-alg``).
``plain_http`` records ``login --allow-plain-http``: the user's consent to send the
password and tokens in clear text to a non-loopback ``http://`` server.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from adapters.file_io import check_trusted, read_private, write_private
from adapters.settings_seal import check, no_secret, seal
from cidx_auth.domain.errors import ConfigurationError, CorruptStore
from cidx_auth.domain.token import JWS_ALGORITHMS

if TYPE_CHECKING:
    from adapters.secret_sources import SecretSource

STORE_DIR = ".code-indexer"
SETTINGS_NAME = "auth.json"
CIDX_CLIENT_MARK = ".remote-config"
OWN_PREFIX = ".cidx-auth"
"""The prefix of cidx-auth's file names in a project the CIDX client set up."""
PROJECT_DIR = "the project directory"
ELSEWHERE = "To use another project directory, give it with --project DIR."


@dataclass(frozen=True, slots=True)
class ProjectLayout:
    """The paths of one project's cidx-auth files.

    ``beside_cidx_client`` is found on the disk unless given: True when the CIDX
    client's files are (or cidx-auth's own-named ones already are) in the directory.
    """

    root: Path
    beside_cidx_client: bool | None = None

    def __post_init__(self) -> None:
        if self.beside_cidx_client is None:
            directory = self.root / STORE_DIR
            shared = any(
                os.path.lexists(directory / name)
                for name in (CIDX_CLIENT_MARK, f"{OWN_PREFIX}.creds", f"{OWN_PREFIX}.token")
            )
            object.__setattr__(self, "beside_cidx_client", shared)

    @property
    def directory(self) -> Path:
        return self.root / STORE_DIR

    @property
    def settings(self) -> Path:
        return self.directory / SETTINGS_NAME

    @property
    def token(self) -> Path:
        return self._own(".token")

    @property
    def token_lock(self) -> Path:
        return self._own(".token.lock")

    @property
    def creds(self) -> Path:
        return self._own(".creds")

    @property
    def state(self) -> Path:
        return self._own(".state")

    @property
    def state_lock(self) -> Path:
        return self._own(".state.lock")

    @property
    def logged_out(self) -> Path:
        """The mark ``logout`` leaves (and ``login`` removes): this project is logged out
        here, even if a session shared in Redis is renewed by another host."""
        return self._own(".logged-out")

    @property
    def remote_config(self) -> Path:
        """The CIDX client's settings (read, never written by cidx-auth)."""
        return self.directory / CIDX_CLIENT_MARK

    def _own(self, name: str) -> Path:
        return self.directory / (OWN_PREFIX + name if self.beside_cidx_client else name)


def find_project_root(start: Path) -> Path:
    """The nearest directory from ``start`` upwards holding ``.code-indexer/``, else ``start``.

    The search stops at the first ``.code-indexer`` (a link included): one another user
    could have planted (``/tmp/.code-indexer``) is refused by :func:`check_project_dir`,
    never used and never passed over for one further up.
    """
    start = start.absolute()
    for candidate in (start, *start.parents):
        store = candidate / STORE_DIR
        if os.path.islink(store) or store.is_dir():
            check_project_dir(candidate)
            return candidate
    return start


def check_project_dir(root: Path) -> None:
    """Refuse (exit 5) the project at ``root`` if its ``.code-indexer`` is a symbolic link,
    is not the user's, or every user can write it or the directory holding it: another
    user could have planted its files or could change them. Every command calls this
    before it reads or writes there; it changes nothing (a group-writable directory is
    tightened by the first write, :func:`adapters.file_io.ensure_private_dir`)."""
    check_trusted(root / STORE_DIR, PROJECT_DIR, group_may_write=True, elsewhere=ELSEWHERE)


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    """What ``cidx-auth login`` records about a project; validated on construction."""

    server_url: str
    username: str | None = None
    allowed_algorithms: tuple[str, ...] | None = None
    """The algorithm pin; None until the first login pins one (any JWS algorithm until then)."""
    ca_bundle: str | None = None
    store_url: str | None = None
    plain_http: bool = False
    """The user opted in to plain http to a host other than this machine."""
    ca_bundle_sha256: str | None = None
    """The SHA-256 of ``ca_bundle``'s content at login: the bundle is trusted by content."""

    def __post_init__(self) -> None:
        check_server_url(self.server_url, "the server URL")
        if (self.ca_bundle is None) != (self.ca_bundle_sha256 is None):
            raise ConfigurationError(
                "a CA bundle is recorded with the SHA-256 of its content: run "
                "`cidx-auth login --ca-bundle FILE` again"
            )
        if self.store_url is not None:
            from adapters.redis_connection import refuse_password

            refuse_password(self.store_url, "the store URL")
        algorithms = self.allowed_algorithms
        if algorithms is None:
            return
        if not algorithms or not all(isinstance(alg, str) and alg for alg in algorithms):
            raise ConfigurationError("allowed_algorithms must list at least one JWT algorithm")
        if any(alg.lower() == "none" for alg in algorithms):
            raise ConfigurationError('the JWT algorithm "none" can never be allowed')

    @property
    def algorithms(self) -> tuple[str, ...]:
        """What tokens may be signed with now: the pin, or any JWS algorithm before it."""
        return self.allowed_algorithms or JWS_ALGORITHMS


def shared_store_url(settings: ProjectSettings) -> str | None:
    """The Redis store the session lives in, if any: ``CIDX_STORE_URL`` wins over the
    settings file. Checked before anything is opened."""
    url = os.environ.get("CIDX_STORE_URL") or settings.store_url
    if not url:
        return None
    from adapters.redis_connection import check_store_url  # redis only when it is used

    if not settings.username:
        raise ConfigurationError(
            "a shared token store is keyed by the username: run "
            "`cidx-auth login --server URL --username NAME --store URL`"
        )
    url = check_store_url(url)
    from adapters.extras import require

    if os.environ.get("CIDX_STORE_URL"):
        require("redis", "CIDX_STORE_URL (a token store in Redis)", "unset CIDX_STORE_URL")
    else:
        require("redis", "this project's token store in Redis (auth.json)",
                "log in again without --store")
    return url


def check_server_url(url: str, where: str) -> None:
    """The one check of a server URL, wherever it enters (``--server``, ``auth.json``
    through :class:`ProjectSettings`, the CIDX client's ``.remote-config``):
    :class:`ConfigurationError` (exit 2), before any request, naming ``where`` and what
    is wrong but not the URL when printing it would be unsafe."""
    refuse_userinfo(url, where)
    if not url.startswith(("https://", "http://")):
        raise ConfigurationError(
            f"{where} must start with https:// (or http:// for a local server)"
        )
    problem = server_url_problem(url)
    if problem:
        raise ConfigurationError(
            f"{where} {problem}; give it as https://host[:port][/path]"
        )


_UNSAFE_ASCII = re.compile("[\x00-\x20\x7f]")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs"})
"""Controls, format characters (bidirectional and zero-width marks), separators and
spaces: no URL holds them (httpx refuses the C0 ones mid-command), a terminal acts on
some, and the rest are invisible, so a URL shown for approval would not be the URL used."""


def _unsafe_at(url: str) -> int | None:
    """Where ``url`` holds its first character of :data:`_UNSAFE_CATEGORIES` (0-based)."""
    if url.isascii():  # the usual case: no unicodedata
        found = _UNSAFE_ASCII.search(url)
        return None if found is None else found.start()
    import unicodedata

    return next((at for at, char in enumerate(url)
                 if char <= " " or unicodedata.category(char) in _UNSAFE_CATEGORIES), None)
_IPV4_SHAPED = re.compile(r"[0-9]+(\.[0-9]+){3}")


def server_url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as a server URL, as a phrase ("has no host"); None if
    nothing does. What httpx would refuse only when a request is built (a control
    character, a port that is not one, an IPv4 address or international domain name that
    is not valid) is found here, before any request."""
    unsafe = _unsafe_at(url)
    if unsafe is not None:
        return (f"holds a control character, a space or an invisible or bidirectional mark "
                f"(at character {unsafe + 1})")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "cannot be read as a URL (its host or port is not valid)"
    if parts.scheme not in ("http", "https"):
        return "is not an http(s):// URL"
    if "@" in parts.netloc:
        return "holds a user name or password (user:pass@host), which cidx-auth does not use"
    if not host:
        return "has no host"
    if port == 0:
        return "has port 0"
    return _host_problem(host)


def _host_problem(host: str) -> str | None:
    if _IPV4_SHAPED.fullmatch(host):
        import ipaddress

        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "has a host that looks like an IPv4 address but is not one"
        return None
    if host.isascii() and not any(label.startswith("xn--") for label in host.split(".")):
        return None
    try:  # an international name: httpx encodes (or decodes) it with idna
        import idna
    except ImportError:  # pragma: no cover - httpx depends on it
        return None
    try:
        if host.isascii():
            idna.decode(host)
        else:
            idna.encode(host)
    except (idna.IDNAError, UnicodeError, ValueError):
        return "has a host that is not a valid international domain name"
    return None


def refuse_userinfo(url: str, where: str) -> None:
    """A ``user:pass@`` in a server URL would be printed, stored and sent as Basic auth:
    :class:`ConfigurationError`, whose message does not repeat the URL."""
    try:
        userinfo = "@" in urlsplit(url).netloc
    except ValueError:  # not a URL: the other checks say what is wrong with it
        return
    if userinfo:
        raise ConfigurationError(
            f"{where} holds a user name or password (user:pass@host); give the server URL "
            "without it: cidx-auth sends your username and password to the login "
            "endpoint only"
        )


def load_settings(
    layout: ProjectLayout, secret: SecretSource | None = None
) -> ProjectSettings | None:
    """The project's settings, once their MAC verifies under the per-user secret
    (``secret``, default: the one the environment names); None if it has none yet."""
    try:
        found = read_private(layout.settings)
    except CorruptStore as damage:
        raise _invalid(layout, str(damage)) from None
    if found is None:
        return None
    try:
        document = json.loads(found[0])
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        raise _invalid(layout, str(error)) from None
    if not isinstance(document, dict):
        raise _invalid(layout, "not a JSON object")
    source = _source(secret)
    check(document, layout.settings, layout.root, lambda: _existing(source, layout.settings))
    try:
        return ProjectSettings(**_fields(document))
    except (ValueError, TypeError) as error:  # ConfigurationError is a ValueError
        raise _invalid(layout, str(error)) from None


def save_settings(
    layout: ProjectLayout, settings: ProjectSettings, secret: SecretSource | None = None
) -> None:
    """Write the settings, signed, atomically (0600); creates the per-user secret if
    there is none yet."""
    document = {
        "server_url": settings.server_url,
        "username": settings.username,
        "allowed_algorithms": (
            None if settings.allowed_algorithms is None else list(settings.allowed_algorithms)
        ),
        "ca_bundle": settings.ca_bundle,
        "ca_bundle_sha256": settings.ca_bundle_sha256,
        "store_url": settings.store_url,
        "plain_http": settings.plain_http,
    }
    signed = seal(document, layout.root, _source(secret).value())
    data = (json.dumps(signed, indent=2) + "\n").encode()
    write_private(layout.settings, data, sweep_young=False, now=time.time())


def _source(secret: SecretSource | None) -> SecretSource:
    from adapters.secret_sources import secret_source  # only when there are settings

    return secret if secret is not None else secret_source()


def _existing(source: SecretSource, settings: Path) -> bytes:
    """The secret's value, never created (in a file or in the keyring): settings signed
    with a secret that is gone cannot be checked, and reading them must not leave a new
    secret behind."""
    from adapters.file_io import WouldChange, read_only

    with read_only("reading the settings creates no secret"):
        try:
            return source.value()
        except WouldChange:
            raise no_secret(settings, getattr(source, "path", None)) from None


def _fields(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("server_url"), str):
        raise ValueError("no server_url")
    algorithms = document.get("allowed_algorithms")
    if algorithms is not None and not isinstance(algorithms, list):
        raise ValueError("allowed_algorithms is not a list")
    fields: dict[str, Any] = {"server_url": document["server_url"]}
    fields["allowed_algorithms"] = None if algorithms is None else tuple(algorithms)
    plain_http = document.get("plain_http", False)
    if not isinstance(plain_http, bool):
        raise ValueError("plain_http is not true or false")
    fields["plain_http"] = plain_http
    for name in ("username", "ca_bundle", "ca_bundle_sha256", "store_url"):
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} is not a string")
        fields[name] = value
    return fields


def _invalid(layout: ProjectLayout, reason: str) -> ConfigurationError:
    return ConfigurationError(
        f"{layout.settings} is not valid ({reason}); run "
        "`cidx-auth login --server URL --username NAME` to write it again"
    )
