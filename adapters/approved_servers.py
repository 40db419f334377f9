"""The servers this user has logged in to or approved: the only ones a project may name.

A repository can ship ``.code-indexer/.remote-config`` (and a ``.creds`` forged for a
guessable clone path: its key is PBKDF2 of public values). Adopting such a project
without asking would send the user's queries, and at ``login`` their password, to a
server the repository chose. So a CIDX client's project is adopted silently only when
its server and user are on this list, which lives outside every project::

    <config dir>/servers.json   (beside user.secret; directory 0700, file 0600)

    {"version": 1, "servers": [{"server_url": "https://cidx.example.com",
                                "username": "alice"}], "mac": "9b1e..."}

``mac`` is HMAC-SHA256, under a key derived from the per-user secret, of every other
field (:mod:`adapters.settings_seal`, as for ``auth.json``): a repository cannot write a
list that verifies, nor can anyone without the secret. Every ``cidx-auth login`` adds
its server and user, and ``cidx-auth approve`` adds a project's, after showing both.

Reading never creates anything (no secret, no file). A list that does not verify
(damaged, hand-edited, written under another secret) approves nothing, with a warning,
and the next addition replaces it: nothing in it was trusted. Additions are serialised
by a lock file beside it, so two logins at once both count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.digests import hmac_sha256
from adapters.file_io import (
    WouldChange,
    check_trusted,
    read_only,
    read_private,
    warn,
    write_private,
)
from adapters.settings_seal import seal_with, verifies
from cidx_auth.domain.credentials import trimmed_username
from cidx_auth.domain.errors import CorruptStore

if TYPE_CHECKING:
    from adapters.secret_sources import SecretSource

SERVERS_NAME = "servers.json"
_KEY_LABEL = b"cidx-auth approved servers v1\0"
_VERSION = 1
_LOCK_WAIT = 10.0
"""An addition takes milliseconds; a holder this slow is stuck."""
MAX_SERVERS = 1000
"""More approvals than anyone makes: beyond it the oldest are dropped."""

Approval = tuple[str, str]
"""(server URL without a trailing "/", username as the server reads it: trimmed)."""


def approval(server_url: str, username: str) -> Approval:
    """The one form in which a server and user are recorded and compared."""
    return server_url.rstrip("/"), trimmed_username(username)


class ApprovedServers:
    """The user's list of approved (server, user) pairs, kept in ``directory``."""

    def __init__(self, directory: Path | None = None, secret: SecretSource | None = None
                 ) -> None:
        from adapters.user_secret import default_config_dir

        self.path = (directory if directory is not None else default_config_dir()) / SERVERS_NAME
        self._secret = secret

    def __contains__(self, pair: object) -> bool:
        """Whether ``pair`` (an :func:`approval`) is approved; reads only."""
        with read_only("checking the approved servers changes nothing"):
            try:
                return pair in self._read(self._key)
            except WouldChange:  # no per-user secret yet: nothing was ever approved
                return False

    def add(self, server_url: str, username: str) -> None:
        """Approve ``server_url`` for ``username`` (creates the secret if there is none)."""
        from adapters.file_lock import file_lock

        pair = approval(server_url, username)
        key = self._key()
        with file_lock(self.path.with_name(SERVERS_NAME + ".lock"), _LOCK_WAIT,
                       "the list of approved servers"):
            servers = [known for known in self._read(lambda: key) if known != pair]
            servers = [*servers, pair][-MAX_SERVERS:]
            document = {"version": _VERSION,
                        "servers": [{"server_url": url, "username": user}
                                    for url, user in servers]}
            data = json.dumps(seal_with(document, key), indent=2) + "\n"
            write_private(self.path, data.encode(), sweep_young=True, now=time.time())

    def _read(self, key: Callable[[], bytes]) -> list[Approval]:
        """The approvals; ``key`` is asked for only when there is a list to check."""
        check_trusted(self.path.parent, "the configuration directory",
                      group_may_write=True, link_ok=True)
        try:
            found = read_private(self.path, secret=True)
        except CorruptStore as damage:
            return self._distrusted(str(damage))
        if found is None:
            return []
        try:
            document = json.loads(found[0])
        except (ValueError, RecursionError):
            return self._distrusted("not valid JSON")
        if not isinstance(document, dict) or not verifies(document, key()):
            return self._distrusted("its signature does not match")
        servers = _servers(document)
        if servers is None:
            return self._distrusted("not a list of servers")
        return servers

    def _distrusted(self, why: str) -> list[Approval]:
        warn("%s is not used (%s): it approves no server; the next `cidx-auth login` or "
             "`cidx-auth approve` writes it again", self.path, why)
        return []

    def _source(self) -> SecretSource:
        from adapters.secret_sources import secret_source

        if self._secret is None:
            self._secret = secret_source()
        return self._secret

    def _key(self) -> bytes:
        return hmac_sha256(self._source().value(), _KEY_LABEL)


def _servers(document: dict[str, Any]) -> list[Approval] | None:
    entries = document.get("servers")
    if document.get("version") != _VERSION or not isinstance(entries, list):
        return None
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            return None
        url, user = entry.get("server_url"), entry.get("username")
        if not isinstance(url, str) or not isinstance(user, str):
            return None
        found.append(approval(url, user))
    return found
