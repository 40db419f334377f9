"""What ``cidx-auth status`` reports: the project's stores as wired, no network call."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from adapters.cidx_client_files import read_remote_config
from adapters.project_layout import ProjectLayout, load_settings
from cidx_auth.domain.breaker import BreakerConfig, next_probe
from cidx_auth.domain.errors import ConfigurationError
from cidx_auth.domain.expiry import ExpiryPolicy
from cidx_auth.project import open_project

COUNTERS = ("logins", "refreshes", "relogins", "failures")


def _clock(epoch: float | None) -> str | None:
    return None if epoch is None else time.strftime("%H:%M:%S", time.localtime(epoch))


def collect(root: Path) -> dict[str, Any]:
    """The project's auth state as plain data; never a secret.

    It reads through the same wiring as every other command (file or Redis token
    store, file or keyring secret), so it sees exactly what they would use.
    """
    layout = ProjectLayout(root)
    if load_settings(layout) is None:
        try:
            remote = read_remote_config(layout.directory)
        except ConfigurationError as problem:  # a question: answered, not an error
            return {"logged_in": False, "token_state": "none",
                    "settings_from": str(layout.remote_config), "next_step": str(problem)}
        if remote is not None:  # the CIDX client's project, not adopted yet: read only
            return {
                "logged_in": False,
                "server": remote.server_url,
                "username": remote.username,
                "settings_from": str(layout.remote_config),
                "token_state": "none",
                "next_step": "the next command (token, request, query) will try to take "
                             "this login from the CIDX client's files; or run "
                             "`cidx-auth login`",
            }
    project = open_project(root, offline=True)
    try:
        session = project.container.token_store().load()
        state = project.container.state_store().read()
    finally:
        project.close()
    settings = project.settings
    report: dict[str, Any] = {
        "logged_in": True,
        "server": settings.server_url,
        "username": settings.username,
        "store": "redis" if project.shared_store else "file",
        "token_state": "none",
        "expires_at": None,
        "seconds_left": None,
        "refresh_token_held": False,
        "credentials_stored": project.layout.creds.exists(),
        "settings_from": str(project.layout.settings),
        "algorithms": list(settings.allowed_algorithms or []) or None,
        "plain_http": settings.plain_http,
    }
    if session is not None:
        policy = ExpiryPolicy()
        token, offset = session.token, session.clock_offset
        judged = policy.state(token, time.time(), offset).value
        report["token_state"] = "refused" if session.refused else judged
        report["expires_at"] = _clock(token.exp - offset)
        report["seconds_left"] = round(policy.seconds_left(token, time.time(), offset))
        report["refresh_token_held"] = bool(session.refresh_token)
    breaker = state.breaker
    report["breaker"] = breaker.circuit.value
    report["breaker_failures"] = breaker.failures
    # When the next probe may go (now, if it may go already); None while closed.
    report["next_attempt"] = _clock(next_probe(breaker, time.time(), BreakerConfig()))
    report["counters"] = {name: state.counters.get(name, 0) for name in COUNTERS}
    report["last_refresh"] = _clock(state.last_refresh)
    return report
