"""The ``cidx-auth`` entry point: the token fast path first, the full CLI otherwise.

``cidx-auth [--project DIR] token`` with a fresh stored token prints it without loading
click, logging, httpx or the container: it is what scripts call before every request.
Anything else, and any doubt about the stored token, goes to ``cidx_auth.cli``.

Interruption is handled here, around both paths, so it holds wherever it lands:
Ctrl-C (``KeyboardInterrupt``) exits 130 and SIGTERM exits 143, each with one line on
stderr and no traceback. SIGTERM is turned into :class:`Terminated`, an exception,
because the default action kills the process on the spot: no ``finally`` clause or
``with`` block would run, so a renewal under way could not release its lock or forget
a refresh token it had just sent.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(SystemExit):
    """SIGTERM, as an exception that unwinds the stack (exit 143).

    A ``SystemExit``, so code that lets an exit through (click, the CLI's error
    handler, ``except Exception``) lets this through too, and a renewal interrupted by
    it treats the answer it was waiting for as lost.
    """

    def __init__(self) -> None:
        super().__init__(EXIT_TERMINATED)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Once only: a second SIGTERM during the clean-up ends the process the default way.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


def _stopped(what: str, code: int) -> None:
    sys.stderr.write(f"cidx-auth: {what}\n")
    sys.stderr.flush()
    sys.exit(code)


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
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if not fast_token(sys.argv[1:]):
            from cidx_auth.cli import main as full

            full()
    except KeyboardInterrupt:  # the CLI's commands say so themselves; this is the rest
        _stopped("interrupted", EXIT_INTERRUPTED)
    except Terminated:
        _stopped("terminated", EXIT_TERMINATED)
