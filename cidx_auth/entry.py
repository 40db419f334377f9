"""The ``cidx-auth`` entry point: the token fast path first, the full CLI otherwise.

``cidx-auth [--project DIR] token`` with a fresh stored token prints it without loading
click, logging, httpx or the container: it is what scripts call before every request.
Anything else, and any doubt about the stored token, goes to ``cidx_auth.cli``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def fast_token(argv: list[str]) -> bool:
    """Print a fresh stored token for a bare ``token`` command; False to take the full path."""
    if argv == ["token"]:
        project: Path | None = None
    elif len(argv) == 3 and argv[0] == "--project" and argv[2] == "token":
        project = Path(argv[1]).absolute()
    else:
        return False
    from adapters.project_layout import find_project_root
    from cidx_auth.domain.errors import CidxAuthError
    from cidx_auth.fastpath import fresh_stored_token

    try:
        raw = fresh_stored_token(project or find_project_root(Path.cwd()))
    except CidxAuthError:
        return False  # the full path reports the problem with its exit code
    if raw is None:
        return False
    sys.stdout.write(raw + "\n")
    return True


def main() -> None:
    """Console-script entry point."""
    if not fast_token(sys.argv[1:]):
        from cidx_auth.cli import main as full

        full()
