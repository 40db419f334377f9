"""One project's wiring for the CLI: settings, file stores, httpx, the API client.

This is composition-root code (it imports adapters); the core never sees it.

**A project the CIDX client set up** (``.code-indexer/.remote-config``, no ``auth.json``)
works with no ``cidx-auth login`` once its server and user are approved: the first
command that needs the server adopts it. A repository can ship ``.remote-config`` (and a
``.creds`` forged for a guessable clone path), so the server it names is used only when
it is on the user's own list of approved servers (:mod:`adapters.approved_servers`:
every ``cidx-auth login`` adds its server and user, ``cidx-auth approve`` a project's);
otherwise the command stops with exit 2 before anything is read or sent, naming the
server, the user and ``cidx-auth approve``. Adoption takes the server and user from
``.remote-config`` and the password from the client's ``.creds`` (or
``encrypted_credentials``). The password goes under cidx-auth's own credential file and
per-user secret, a still-valid access token from the client's ``.token`` becomes the
session (no login at all), and ``auth.json`` is written, so adoption happens once. The
first login the renewal then makes verifies the password (a refused one is forgotten, as
any stored password is) and pins the token algorithm. The client's files are only read.

**Local checks first.** A command that will contact the server reads (or creates) the
per-user secret and checks the lock files before anything is written or sent: a secret
another user could have chosen stops it with exit 5 while the password is still unsent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from adapters.cidx_client_files import (
    RemoteConfig,
    read_client_credentials,
    read_client_token,
    read_remote_config,
)
from adapters.project_layout import (
    ProjectLayout,
    ProjectSettings,
    check_project_dir,
    find_project_root,
    load_settings,
    refuse_userinfo,
    save_settings,
    shared_store_url,
)
from adapters.secret_sources import secret_source
from cidx_auth.domain.credentials import Credentials, trimmed_username
from cidx_auth.domain.errors import (
    ConfigurationError,
    LoggedOut,
    NotApproved,
    NotLoggedIn,
    ServerUnavailable,
    StorageError,
)
from cidx_auth.domain.events import AuthEvent, EventKind
from cidx_auth.domain.proxy import choose_proxy, is_remote_plain_http
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Grant

if TYPE_CHECKING:  # httpx, the clients and the container load only when a command uses them
    from adapters.cidx_client import AsyncCidxClient, CidxClient
    from adapters.http_settings import HttpSettings
    from adapters.httpx_gateway import HttpxGateway
    from adapters.secret_sources import SecretSource
    from cidx_auth.app.container import Container
    from cidx_auth.ports import EventSink
    from cidx_auth.service.provider import TokenProvider

logger = logging.getLogger("cidx_auth")


@dataclass
class Project:
    """One project's login, wired: the API clients and the token provider behind them.

    Made by :func:`open_project`; close it when done (``with open_project() as
    project:``), which records the token algorithm this process pinned and closes the
    auth gateway. Build it once per process and share it: its clients renew one token.
    """

    root: Path
    settings: ProjectSettings
    container: Container
    http: HttpSettings
    gateway: LazyGateway
    layout: ProjectLayout
    """The project's file names, decided once per command (see ``ProjectLayout``)."""
    shared_store: str | None = None
    """The Redis URL when the session lives in a shared store, else None (files)."""
    obtained: Obtained = field(default_factory=lambda: Obtained())
    """The tokens this process got from the server (only those pin the algorithm)."""
    closed: bool = field(default=False, init=False)
    """Whether :meth:`close` ran: a closed project makes no more clients."""

    @property
    def provider(self) -> TokenProvider:
        """The project's :class:`~cidx_auth.service.provider.TokenProvider`, the one its
        clients share: ``get_token()`` / ``aget_token()`` give a valid access token
        (renewed when due), ``invalidate(token)`` after the server refused one. The same
        object every time; what :class:`CidxAuth` takes."""
        provider: TokenProvider = self.container.token_provider()
        return provider

    def client(self) -> CidxClient:
        """A blocking API client whose calls carry (and renew) the token; close it
        (``with project.client() as cidx:``). What its calls raise: :class:`CidxClient`.
        Raises ``ConfigurationError`` once the project is closed."""
        from adapters.cidx_client import CidxClient

        self._refuse_if_closed("client")
        return CidxClient(
            self.http, self.provider, self.container.breaker(), clock=self.container.clock()
        )

    def async_client(self) -> AsyncCidxClient:
        """The asyncio twin of :meth:`client` (httpx's async stack loads only here)."""
        from adapters.cidx_client import AsyncCidxClient

        self._refuse_if_closed("async_client")
        return AsyncCidxClient(
            self.http, self.provider, self.container.breaker(), clock=self.container.clock()
        )

    def close(self) -> None:
        """Record the algorithm pin if this process got the project's first token, and
        close the auth gateway. Raises nothing: a pin that cannot be written is a
        warning on the ``cidx_auth`` logger (the next command pins it)."""
        self.closed = True
        try:
            pin_algorithm(self)
        except (StorageError, ConfigurationError) as error:  # e.g. changed meanwhile
            logger.warning("the token's algorithm could not be recorded in %s (%s)",
                           self.layout.settings, error)
        finally:
            self.gateway.close()

    def _refuse_if_closed(self, what: str) -> None:
        """A client of a closed project would fail only at its first renewal: refused now."""
        if self.closed:
            raise ConfigurationError(
                f"project.{what}() after the project was closed: make the clients inside "
                "`with open_project() as project:`, or open the project again")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def open_project(
    path: Path | str | None = None,
    extra_sinks: Sequence[EventSink] = (),
    *,
    offline: bool = False,
) -> Project:
    """The project holding ``path`` (default: the current directory), found as the CLI
    finds it: the nearest directory from ``path`` upwards holding ``.code-indexer/``,
    under the same ownership rules. ``path`` is resolved first (links and ``..``), so
    the search climbs the real directory's ancestors. Use it as a context manager::

        with open_project() as project, project.client() as cidx:
            hits = cidx.query("token refresh", "backend")

    ``extra_sinks`` also hear every :class:`~cidx_auth.domain.events.AuthEvent`;
    ``offline``: nothing will be sent (a plain-http server is then no reason to stop).
    A project only the CIDX client has set up is adopted first, if its server is approved.

    Raises ``ConfigurationError`` when ``path`` is not a directory, the settings do not
    verify or name a server that may not be used (plain http to another host, a CIDX
    client's server not approved: ``NotApproved``); ``NotLoggedIn`` when no project
    there has been logged in to (``LoggedOut`` after ``cidx-auth logout``);
    ``StorageError`` when the project's ``.code-indexer`` or the per-user secret is a
    link, another user's or writable by others, or cannot be read. Nothing is sent.
    """
    return open_project_at(_start_of(path), None, extra_sinks, offline=offline, search=True)


def _start_of(path: object) -> Path:
    """``path`` as the directory to start from; a clear error for anything else."""
    if path is None:
        return Path.cwd()
    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
        raise ConfigurationError(f"open_project takes a directory path (str or Path), "
                                 f"not {type(path).__name__}")
    start = Path(path)
    if not start.is_dir():
        raise ConfigurationError(f"{start} is not a directory: give open_project the "
                                 "project's directory, or one inside it")
    # Resolved, as the CLI's start (the working directory) is: the search walks the real
    # directory's ancestors, not those a link or a `..` spells out.
    return start.resolve()


def open_project_at(
    root: Path,
    settings: ProjectSettings | None = None,
    extra_sinks: Sequence[EventSink] = (),
    *,
    offline: bool = False,
    secret: SecretSource | None = None,
    search: bool = False,
) -> Project:
    """The project at exactly ``root`` (the CLI's ``--project DIR``, or the root it
    found); ``search``: the nearest ancestor of ``root`` holding ``.code-indexer/``
    instead, as :func:`open_project`. Wired from its saved settings (or the ones given,
    for ``login``); a project only the CIDX client has set up is adopted first.
    ``secret``: the per-user secret's source, when the caller has read it already
    (``login`` checks it first). ``offline``: the command talks to no server (``status``,
    ``logout``), so a plain-http URL is no reason to stop. Raises as :func:`open_project`."""
    # Another user's, or a link: refused before anything is read (the search checks each
    # .code-indexer it meets the same way, and stops at the first).
    root = find_project_root(root) if search else root
    check_project_dir(root)
    layout = ProjectLayout(root)
    given = settings  # login's: it logs in again, the one way past a logout
    settings = settings or load_settings(layout)
    adopting = None
    if settings is None:
        remote = read_remote_config(layout.directory)
        if remote is None:
            raise NotLoggedIn(
                f"no cidx-auth settings in {root}: run "
                "`cidx-auth login --server URL --username NAME` first"
            )
        settings, adopting = _adoption(layout, remote)
    if not settings.plain_http and not offline:
        check_plain_http(settings.server_url, f"the server URL in {layout.settings}")
    store_url = shared_store_url(settings)  # a missing redis extra: before anything is made
    if given is None and not offline and os.path.lexists(layout.logged_out):
        raise LoggedOut(LOGGED_OUT_HERE)
    secret = secret if secret is not None else secret_source()
    if not offline:
        # Local checks before anything is written or sent: the secret (read, or created
        # for a first login) and the lock files another user could have planted.
        secret.value()
        refuse_foreign_lock_files(layout)
    ca_bundle = Path(settings.ca_bundle) if settings.ca_bundle else None
    # Trusted by its content, not its path; a command that sends nothing checks nothing.
    pin = None if offline else settings.ca_bundle_sha256
    from adapters.http_settings import HttpSettings, ssl_context
    from cidx_auth.app.container import build_project, in_redis

    http = HttpSettings(settings.server_url, ca_bundle=ca_bundle, ca_bundle_sha256=pin,
                        plain_http=settings.plain_http)
    if not offline:  # a proxy that may not carry this server's traffic: before any request
        http.proxy_url()
    if ca_bundle is not None and not offline:
        # Checked now, not when the gateway is first built: that is inside a renewal,
        # after its intent has put the refresh token aside (one file: cheap).
        ssl_context(http)
    gateway = LazyGateway(http)
    rules = Rules.pinned(settings.algorithms)
    obtained = Obtained()
    sinks = (*extra_sinks, obtained)
    # The session lives in the project's files, or in a shared Redis store.
    shared = None
    if store_url and settings.username:
        shared = in_redis(store_url, settings.username)
    container = build_project(root, settings.server_url, gateway, shared=shared,
                              extra_sinks=sinks, rules=rules, secret=secret)
    project = Project(root, settings, container, http, gateway, layout, store_url, obtained)
    if adopting is not None:
        adopting(project)
    return project


def _adoption(
    layout: ProjectLayout, remote: RemoteConfig
) -> tuple[ProjectSettings, Callable[[Project], None]]:
    """The settings a CIDX client's project implies, and the step that adopts it."""
    check_plain_http(remote.server_url, f"the CIDX client's {layout.remote_config}")
    require_approved(layout, remote)  # before anything else of the project's is used
    credentials = read_client_credentials(layout.directory, layout.root, remote)
    # Stored and sent as the server sees it (the server trims): so is a typed one.
    settings = ProjectSettings(remote.server_url, trimmed_username(remote.username))

    def adopt(project: Project) -> None:
        # What cidx-auth already holds here (auth.json lost, or a fleet's Redis session)
        # is kept: adoption only fills what is missing.
        own = project.container.credential_store()
        if own.load() is None:
            own.save(credentials)
        if project.container.token_store().load() is None:
            raw = read_client_token(layout.directory, layout.root, remote)
            if raw is not None:
                _take_client_token(project, raw)
        save_settings(layout, settings)
        logger.info("adopted the CIDX client's login for %s at %s from %s",
                    remote.username, remote.server_url, layout.remote_config)

    return settings, adopt


LOGGED_OUT_HERE = ("logged out here (`cidx-auth logout`): run `cidx-auth login`; it asks "
                   "only for the password")


def require_approved(layout: ProjectLayout, remote: RemoteConfig) -> None:
    """Refuse (exit 2) a CIDX client's project whose server and user the user has not
    approved: a cloned repository must not choose where queries and passwords go."""
    from adapters.approved_servers import ApprovedServers, approval

    username = trimmed_username(remote.username)
    if approval(remote.server_url, username) in ApprovedServers():
        return
    raise NotApproved(not_approved(
        layout, remote.server_url, username,
        "run `cidx-auth approve` here (or `cidx-auth login`)"))


def server_named(url: str) -> str:
    """``url`` as shown for approval: with the host's ASCII (IDNA) form beside it when
    it has letters outside ASCII, so a look-alike (a Cyrillic letter for a Latin one)
    shows itself."""
    if url.isascii():
        return url
    from urllib.parse import urlsplit

    host = ""
    try:
        host = urlsplit(url).hostname or ""
        ascii_host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        ascii_host = ascii(host)
    return f"{url} (host {ascii_host})"


def not_approved(layout: ProjectLayout, server_url: str, username: str, remedy: str) -> str:
    """The one line that names the server and user a project asks for, and the way on."""
    server_url = server_named(server_url)
    return (
        f"{layout.remote_config} names the server {server_url} and user {username}, which "
        f"you have not approved (a cloned repository can name any server); nothing was "
        f"sent. If they are yours, {remedy}"
    )


def _take_client_token(project: Project, raw: str) -> None:
    """Keep the client's access token as the session while it lasts (no refresh token:
    the client never had one). A token our rules refuse is simply not used, and neither
    is one issued to anyone but the project's user: the file's own record of the user
    is no proof (its key is made of public values), so a repository could otherwise
    plant its own account's token and have the user's queries run as that account."""
    import time

    from cidx_auth.domain.errors import TokenRejected
    from cidx_auth.domain.token import Session, parse_access_token

    rules = Rules.pinned(project.settings.algorithms)
    try:
        token = parse_access_token(raw, rules.tokens, time.time())
    except TokenRejected as why:
        logger.info("the CIDX client's token is not used (%s)", why)
        return
    if token.username is None or (
        trimmed_username(token.username) != project.settings.username
    ):
        logger.info("the CIDX client's token is not used: it was not issued to %s",
                    project.settings.username)
        return
    store = project.container.token_store()
    with store.lock(rules.lock_wait):
        store.save(Session(token, None, 0.0, project.settings.username))


def refuse_foreign_lock_files(layout: ProjectLayout) -> None:
    """A link, a non-regular file or another user's file where a lock file goes: exit 5,
    left untouched (decisions.md, "Lock trouble"). The state lock included, whose
    failures the breaker otherwise rides out quietly."""
    from adapters.file_lock import refuse_unless_ours

    for path in (layout.token_lock, layout.state_lock):
        refuse_unless_ours(path)


def check_plain_http(url: str, where: str) -> None:
    """Passwords and tokens go over plain http only to this machine (loopback), unless
    the user opted in at login; checked before any connection is made. A URL with
    ``user:pass@`` is refused first (the refusal below would print it)."""
    refuse_userinfo(url, where)
    if not is_remote_plain_http(url):
        return
    # The opt-in would let a proxy carry it too: the refusal names the proxy, if any.
    proxy = choose_proxy(url, os.environ, plain_http_allowed=True)
    via = f", through the proxy {proxy.shown} (from {proxy.source})" if proxy.url else ""
    raise ConfigurationError(
        f"{where} names {url}, plain http to another host{via}: cidx-auth will not send a "
        "password or token there in clear text. Use the server's https:// URL, or opt in "
        "with `cidx-auth login --server URL --allow-plain-http`"
    )


def pin_algorithm(project: Project) -> None:
    """Record the algorithm of the project's first token as its pin (decisions.md).

    Only a token this process got from the server itself (a login or a refresh) pins:
    not one taken from the store, which a file planted in a checkout could have put there.
    """
    if project.settings.allowed_algorithms is not None:
        return
    session = project.provider.session
    if session is None or session.token.fingerprint not in project.obtained.fingerprints:
        return
    # Verify, then sign: a file changed since this command read it is refused, never
    # signed again. Another command may also have logged in meanwhile.
    current = load_settings(project.layout)
    if current is None or current.allowed_algorithms is not None or (
        (current.server_url, current.username)
        != (project.settings.server_url, project.settings.username)
    ):
        return
    pinned = replace(current, allowed_algorithms=(session.token.alg,))
    save_settings(project.layout, pinned)
    project.settings = pinned


class LazyGateway:
    """The auth gateway, built when a login or a refresh first needs it: a command whose
    stored token is still good never pays for the gateway's HTTP client and TLS context."""

    def __init__(self, http: HttpSettings) -> None:
        self._http = http
        self._built: HttpxGateway | None = None
        self._closed = False
        self._mutex = threading.Lock()

    def login(self, credentials: Credentials) -> Grant:
        return self._gateway().login(credentials)

    def refresh(self, refresh_token: str) -> Grant:
        return self._gateway().refresh(refresh_token)

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            if self._built is not None:
                self._built.close()

    def _gateway(self) -> HttpxGateway:
        with self._mutex:
            if self._closed:  # a renewal outliving its command: build nothing to leak
                raise ServerUnavailable("the project was closed", reached=False)
            if self._built is None:
                from adapters.httpx_gateway import HttpxGateway

                self._built = HttpxGateway(self._http)
            return self._built


class Obtained:
    """An event sink that remembers the tokens this process got from the server."""

    _KINDS = frozenset({EventKind.LOGGED_IN, EventKind.RELOGGED_IN, EventKind.REFRESHED})

    def __init__(self) -> None:
        self.fingerprints: set[str] = set()

    def emit(self, event: AuthEvent) -> None:
        if event.kind in self._KINDS and event.fingerprint is not None:
            self.fingerprints.add(event.fingerprint)
