"""What ``cidx-auth status`` reports: the project's files as they are, no network call.

``status`` writes nothing anywhere (decisions.md): no damaged token set aside, no lock
file, no per-user secret created, no mode corrected. It reads each file itself, without
the stores that repair what they find, and it runs inside :func:`adapters.file_io.
read_only`, so a read shared with the other commands (the settings, the secret) cannot
repair or create anything either. What the next command would do about each oddity is
listed under ``findings``.

The report is what ``status --json`` prints (README documents each field): times in
ISO 8601 UTC, durations in seconds. :func:`lines` shows the same report to people, in
local time with the date when it is not today (:mod:`cidx_auth.domain.moments`).
"""

from __future__ import annotations

import math
import os
import stat
import time
from pathlib import Path
from typing import Any

from adapters.approved_servers import ApprovedServers, approval
from adapters.cidx_client_files import client_password_saved, read_remote_config
from adapters.fernet_cipher import identity_cipher, project_cipher
from adapters.file_io import FILE_MODE, is_foreign, read_only, read_regular
from adapters.file_state_store import decode_state
from adapters.project_layout import (
    ProjectLayout,
    ProjectSettings,
    load_settings,
    shared_store_url,
)
from adapters.secret_sources import SecretSource, secret_source
from adapters.session_codec import decode_session
from cidx_auth.app.render import printable
from cidx_auth.domain.breaker import BreakerConfig, next_probe
from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.credentials import trimmed_username
from cidx_auth.domain.errors import ConfigurationError, CorruptStore, StorageError
from cidx_auth.domain.expiry import TokenState
from cidx_auth.domain.moments import epoch_of, iso_utc, local_text
from cidx_auth.domain.proxy import choose_proxy, is_remote_plain_http
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Session

COUNTERS = ("logins", "refreshes", "relogins", "failures")
MOMENTS = ("checked_at", "expires_at", "next_attempt", "last_refresh")
"""The report's times: ISO 8601 in UTC with the offset (``--json``), None when there is
none or no calendar can show it (a finding then says which)."""


def lines(report: dict[str, Any], now: float) -> list[str]:
    """The report for people: one ``label: value`` line per field, one per finding,
    times in local time (with the date when not today), server text made printable."""
    shown = []
    for key, value in report.items():
        if key in MOMENTS and value is not None:
            value = local_text(epoch_of(value), now)
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
        label, values = key.replace("_", " "), [value]
        if key == "findings":  # one line each
            label, values = "finding", value or [None]
        elif isinstance(value, list):  # the algorithms: "RS256", not "['RS256']"
            values = [", ".join(map(str, value)) or None]
        elif isinstance(value, bool):
            values = ["yes" if value else "no"]
        shown += [f"{label:>18}: {'-' if item is None else printable(item)}" for item in values]
    return shown


def collect(root: Path) -> dict[str, Any]:
    """The project's auth state as plain data; never a secret, and nothing changed."""
    with read_only("`cidx-auth status` changes nothing"):
        return _collect(root, time.time())


def _collect(root: Path, now: float) -> dict[str, Any]:
    layout = ProjectLayout(root)
    secret = secret_source()
    settings = load_settings(layout, secret)
    if settings is None:
        return _not_logged_in(layout)
    findings: list[str] = []

    def moment(epoch: float | None, what: str) -> str | None:
        shown = None if epoch is None else iso_utc(epoch)
        if epoch is not None and shown is None:
            findings.append(f"{what} is beyond any date a calendar can show (null here)")
        return shown

    store_url = shared_store_url(settings)
    unreadable: list[str] = []
    session = _session(layout, settings, store_url, secret, findings, unreadable)
    state = _state(layout, findings, unreadable)
    findings += _wide_modes(layout)
    report: dict[str, Any] = {
        "logged_in": True,
        "checked_at": moment(now, "the current time"),
        "server": settings.server_url,
        "username": settings.username,
        "store": "redis" if store_url else "file",
        "token_state": "none",
        "expires_at": None,
        "seconds_left": None,
        "refresh_token_held": False,
        "credentials_stored": os.path.lexists(layout.creds),
        "settings_from": str(layout.settings),
        "algorithms": list(settings.allowed_algorithms or []) or None,
        "plain_http": settings.plain_http,
        # The proxy the next command's requests go through (the one decision the HTTP
        # clients ask), without its user and password; None: straight to the server.
        "proxy": None,
    }
    proxy = choose_proxy(settings.server_url, os.environ, settings.plain_http)
    if proxy.refusal is not None:
        findings.append(f"the next command that contacts the server stops: {proxy.refusal}")
    else:
        report["proxy"] = proxy.shown
    if session is not None:
        rules = Rules.pinned(settings.algorithms)
        token, offset = session.token, session.clock_offset
        judged = rules.judge(session, now)  # as the fast path and the renewal judge it
        left = rules.expiry.seconds_left(token, now, offset) if judged.usable else 0.0
        report["token_state"] = judged.value
        if judged is TokenState.NOT_ALLOWED:
            findings.append(f"the stored token is signed {token.alg}, outside the pinned "
                            f"{', '.join(settings.algorithms)}: never sent; the next "
                            "command obtains a new one")
        report["expires_at"] = moment(token.exp - offset, "the stored token's expiry")
        report["seconds_left"] = round(left) if math.isfinite(left) else None
        report["refresh_token_held"] = bool(session.refresh_token)
    breaker = state.breaker
    report["breaker"] = breaker.circuit.value
    report["breaker_failures"] = breaker.failures
    # When the next probe may go (now, if it may go already); None while closed.
    report["next_attempt"] = moment(next_probe(breaker, now, BreakerConfig()),
                                    "the breaker's next attempt")
    report["counters"] = {name: state.counters.get(name, 0) for name in COUNTERS}
    report["last_refresh"] = moment(state.last_refresh, "the last refresh")
    report["findings"] = findings
    report["unreadable"] = unreadable
    # Logged in: something is stored to go on with, a session (even one that cannot be
    # read) or a password. After `logout` neither is: the settings stay, for `login`.
    token_there = session is not None or (not store_url and os.path.lexists(layout.token))
    logged_out = os.path.lexists(layout.logged_out)  # even if a shared session is renewed
    if logged_out or not (token_there or report["credentials_stored"]):
        report["logged_in"] = False
        report["next_step"] = LOG_IN_AGAIN
    elif exit_code(report) == EXIT_NOT_LOGGED_IN:  # a token that will not do, nothing to renew
        report["next_step"] = LOG_IN_AGAIN
    return report


EXIT_READY, EXIT_NOT_LOGGED_IN, EXIT_BREAKER_OPEN, EXIT_UNREADABLE = 0, 3, 4, 5


def exit_code(report: dict[str, Any]) -> int:
    """The exit code of ``status`` for its report (decisions.md, "`status` exit codes"),
    decided here once for the fast path and the full one.

    0: the next command reaches the server as this user without asking anything: a
    usable token (fresh, or stale: still valid while it is renewed) or a way to renew
    (a refresh token or a stored password), and a breaker closed or due for a probe. In
    a CIDX client's project not adopted yet: its server and user approved and its saved
    password there (the next command adopts it). 3: not logged in, logged out, or
    nothing to renew with. 4: the breaker is open. 5: a store could not be read."""
    if report.get("unreadable"):
        return EXIT_UNREADABLE
    if not report["logged_in"]:  # ready only in a CIDX client's project it can adopt
        ready = report.get("approved") is True and report.get("credentials_stored") is True
        if ready and is_remote_plain_http(report["server"]):  # refused before any request
            ready = False
        return EXIT_READY if ready else EXIT_NOT_LOGGED_IN
    usable = report["token_state"] in (TokenState.FRESH.value, TokenState.STALE.value)
    if not (usable or report["refresh_token_held"] or report["credentials_stored"]):
        return EXIT_NOT_LOGGED_IN
    # Open, or half-open with its probe out: the next call is refused until next_attempt
    # (which is checked_at when a probe may go now, and null beyond any date).
    if report["breaker"] != "closed" and report["next_attempt"] != report["checked_at"]:
        return EXIT_BREAKER_OPEN
    return EXIT_READY


LOG_IN_AGAIN = ("run `cidx-auth login`: it asks only for the password (the server, user "
                "and other settings are kept)")
"""What to do when the settings are there but nothing to renew with (after `logout`)."""


def _not_logged_in(layout: ProjectLayout) -> dict[str, Any]:
    try:
        remote = read_remote_config(layout.directory)
    except ConfigurationError as problem:  # a question: answered, not an error
        return {"logged_in": False, "token_state": "none",
                "settings_from": str(layout.remote_config), "next_step": str(problem)}
    if remote is None:
        return {"logged_in": False, "token_state": "none",
                "next_step": "cidx-auth login --server URL --username NAME"}
    username = trimmed_username(remote.username)
    approved = approval(remote.server_url, username) in ApprovedServers()
    saved = client_password_saved(layout.directory, remote)
    next_step = (
        "the next command (token, request, query) will try to take this login from the "
        "CIDX client's files; or run `cidx-auth login`" if approved and saved else
        f"the CIDX client has no saved password in {layout.directory}: run "
        "`cidx-auth login`" if approved else
        "you have not approved this server and user (a cloned repository can name any "
        "server): if they are yours, run `cidx-auth approve` (or `cidx-auth login`); "
        "until then no command sends anything")
    if is_remote_plain_http(remote.server_url):
        next_step = (f"{layout.remote_config} names a plain http:// server on another host: "
                     "no command sends a password there; use its https:// URL, or run "
                     "`cidx-auth login --server URL --allow-plain-http`")
    return {  # the CIDX client's project, not adopted yet: read only
        "logged_in": False,
        "server": remote.server_url,
        "username": username,
        "approved": approved,
        # The client's saved password, which the next command would adopt (not decrypted
        # here: its 100,000-iteration key costs 50 ms, and it proves nothing anyway).
        "credentials_stored": saved,
        "settings_from": str(layout.remote_config),
        "token_state": "none",
        "next_step": next_step,
    }


def _session(
    layout: ProjectLayout, settings: ProjectSettings, store_url: str | None,
    secret: SecretSource, findings: list[str], unreadable: list[str],
) -> Session | None:
    """The stored session as the next command would find it; oddities go to ``findings``,
    and a store that cannot be read (not a damaged file: storage failing) to ``unreadable``."""
    if store_url and settings.username:
        return _shared_session(store_url, settings, secret, findings, unreadable)
    cipher = project_cipher(layout.root, settings.server_url, secret)
    try:
        found = read_regular(layout.token)
        if found is None:
            return None
        if is_foreign(found[0]):
            findings.append(f"{layout.token} is another program's file: left alone, "
                            "the next command logs in")
            return None
        return decode_session(found[0], cipher)
    except CorruptStore as damage:
        findings.append(f"the stored token cannot be used ({damage}): the next command "
                        "sets it aside and logs in with the stored credentials")
    except StorageError as error:
        findings.append(f"the stored token cannot be read ({error})")
        unreadable.append(str(layout.token))
    return None


def _shared_session(
    store_url: str, settings: ProjectSettings, secret: SecretSource, findings: list[str],
    unreadable: list[str],
) -> Session | None:
    """The session in Redis, read as any host reads it outside the lock (which never
    sets a damaged value aside: only a lock holder may)."""
    from adapters.redis_connection import connect
    from adapters.redis_token_store import RedisTokenStore, identity_key

    assert settings.username is not None
    cipher = identity_cipher(settings.server_url, settings.username, secret)
    store = RedisTokenStore(connect(store_url), identity_key(settings.server_url,
                                                             settings.username), cipher,
                            url=store_url, rules=Rules.pinned(settings.algorithms))
    try:
        return store.load()
    except StorageError as error:
        findings.append(f"the shared token cannot be read ({error})")
        unreadable.append("the shared token store")
        return None


def _state(layout: ProjectLayout, findings: list[str], unreadable: list[str]) -> ClientState:
    try:
        found = read_regular(layout.state)
        return ClientState() if found is None else decode_state(found[0])
    except CorruptStore as damage:
        findings.append(f"{layout.state}: {damage}; the next command starts from a closed "
                        "breaker and new counters")
    except StorageError as error:
        findings.append(f"{error}; breaker state and counters are not persisted")
        unreadable.append(str(layout.state))
    return ClientState()


def _wide_modes(layout: ProjectLayout) -> list[str]:
    """cidx-auth's own files whose mode the next command that reads them corrects."""
    found = []
    for path in (layout.settings, layout.token, layout.creds, layout.state):
        try:
            status = os.lstat(path)
        except OSError:
            continue
        mode = stat.S_IMODE(status.st_mode)
        if os.name == "posix" and stat.S_ISREG(status.st_mode) and mode != FILE_MODE:
            found.append(f"{path} has mode {mode:03o}: the next command sets it to "
                         f"{FILE_MODE:03o}")
    return found
