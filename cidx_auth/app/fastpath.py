"""``cidx-auth token`` with a fresh stored token: read, decrypt, print. Nothing else.

This path skips what it does not use: no httpx, no container, no reference server.
It imports the file store, the cipher and the domain only, and falls back to the full
provider (``cidx_auth.app.project``) whenever the stored token is not fresh.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from adapters.fernet_cipher import project_cipher
from adapters.file_io import is_foreign, read_private
from adapters.project_layout import ProjectLayout, check_project_dir, load_settings
from adapters.secret_sources import secret_source
from adapters.session_codec import decode_session
from cidx_auth.domain.errors import CidxAuthError
from cidx_auth.domain.expiry import TokenState
from cidx_auth.domain.rules import Rules


def fresh_stored_token(root: Path) -> str | None:
    """The stored access token if it is fresh and allowed by the settings, else None."""
    check_project_dir(root)
    layout = ProjectLayout(root)
    secret = secret_source()  # one read of the secret: it checks the settings and opens the token
    settings = load_settings(layout, secret)
    if settings is None or settings.store_url or os.environ.get("CIDX_STORE_URL"):
        return None  # a token shared in Redis is read by the full path
    if os.path.lexists(layout.logged_out):
        return None  # logged out here: the full path says so
    cipher = project_cipher(root, settings.server_url, secret)
    # Read-only: anything wrong with the file is left for the full path to report and
    # set aside under the lock; this path only answers when all is well.
    try:
        found = read_private(layout.token, ours=lambda data: not is_foreign(data))
        session = decode_session(found[0], cipher) if found is not None else None
    except CidxAuthError:
        return None
    if session is None:
        return None
    state = Rules.pinned(settings.algorithms).judge(session, time.time())
    return session.token.raw if state is TokenState.FRESH else None
