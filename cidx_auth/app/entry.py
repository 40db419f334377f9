"""The ``cidx-auth`` entry point: two cold paths first, the full CLI otherwise.

``cidx-auth [--project DIR] token`` with a fresh stored token prints it without loading
click, logging, httpx or the container: it is what scripts call before every request.
``cidx-auth [--project DIR] status [--json]`` prints its report without click or httpx
(it reads local files only). Anything else, any doubt about the stored token, and any
error or log line along the way goes to ``cidx_auth.app.cli``, which does it again with its
messages and exit codes: both paths only read, so doing it twice changes nothing.
``tests/unit/test_cold_imports.py`` checks what each path leaves unloaded.

Core dumps are turned off here first (:func:`no_core_dumps`): a crash during ``login``
once left a core holding the typed password in the project directory.

Interruption is handled here, around both paths, so it holds wherever it lands:
Ctrl-C (``KeyboardInterrupt``) exits 130 and SIGTERM exits 143, each with one line on
stderr and no traceback. SIGTERM is turned into :class:`Terminated`, an exception,
because the default action kills the process on the spot: no ``finally`` clause or
``with`` block would run, so a renewal under way could not release its lock or forget
a refresh token it had just sent.
"""

from __future__ import annotations

import contextlib
import os
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


class _Parsed:
    """What the cold paths understand of ``argv``: the global options ``--project DIR``
    (or ``--project=DIR``) and ``-q``/``--quiet``, before or after the command, and the
    rest in order. Anything else (``-v``, ``--help``, an unknown option) is left in the
    rest, which the cold paths then do not recognise: the full CLI takes it."""

    def __init__(self, argv: list[str]) -> None:
        self.project: Path | None = None
        self.quiet = False
        self.rest: list[str] = []
        words = iter(argv)
        for word in words:
            if word == "--project":
                value = next(words, None)
                if value is None or not value:
                    self.rest.append(word)  # the full CLI says what is missing
                    continue
                self.project = Path(value).absolute()
            elif word.startswith("--project="):
                self.project = Path(word.partition("=")[2]).absolute()
            elif word in ("-q", "--quiet"):
                self.quiet = True
            else:
                self.rest.append(word)


def _command(argv: list[str]) -> tuple[Path | None, list[str]]:
    """The ``--project DIR`` given anywhere, if any, and the rest of ``argv``."""
    parsed = _Parsed(argv)
    return parsed.project, parsed.rest


def _root(project: Path | None) -> Path:
    from adapters.project_layout import find_project_root

    return project or find_project_root(Path.cwd())


def fast_token(argv: list[str]) -> bool:
    """Print a fresh stored token for a bare ``token`` command; False to take the full path."""
    project, command = _command(argv)
    if command != ["token"]:
        return False
    from cidx_auth.app.fastpath import fresh_stored_token
    from cidx_auth.domain.errors import CidxAuthError

    try:
        raw = fresh_stored_token(_root(project))
    except CidxAuthError:
        return False  # the full path reports the problem with its exit code
    if raw is None:
        return False
    return _print(raw)


def fast_status(argv: list[str]) -> int | None:
    """Print ``status [--json]`` without click; its exit code, or None to take the full
    path (which decides the code with the same :func:`cidx_auth.app.status.exit_code`)."""
    parsed = _Parsed(argv)
    project, command = parsed.project, parsed.rest
    if command not in (["status"], ["status", "--json"]):
        return None
    import json
    import time

    from adapters.file_io import held_back
    from adapters.project_layout import check_project_dir
    from cidx_auth.app.status import collect, exit_code, lines

    logging_loaded = "logging" in sys.modules
    with held_back() as heard:
        try:
            root = _root(project)
            check_project_dir(root)
            report = collect(root)
        except Exception:  # the full path reports it, with its exit code
            return None
    # A warning is the full path's to print, in its format: ours are held back; a library
    # that loaded logging on the way (keyring, redis) may have said something unheard.
    if heard or ("logging" in sys.modules and not logging_loaded):
        return None
    if "--json" in command:  # asked for: printed under -q too
        shown = _print(json.dumps(report, indent=2, sort_keys=True))
    else:  # -q: nothing printed, the exit code is the answer
        shown = parsed.quiet or _print("\n".join(lines(report, time.time())))
    return exit_code(report) if shown else None


def _print(text: str) -> bool:
    """``text`` on stdout; a reader that left early (``status | head``) is no error.
    False, with nothing written, when stdout's encoding cannot show it (an ASCII
    locale and a name like "zoë"): the full path prints it as click does."""
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except UnicodeEncodeError:
        return False
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return True


class _Unused:
    """A meta-path finder: while dependency-injector is imported, the frameworks it looks
    for (YAML and pydantic configuration, FastAPI, Starlette, Flask and FastDepends
    wiring) read as not installed. Each one it finds costs imports (YAML and Starlette
    alone about 20 ms) for integrations the CLI never uses. Only for that import: the
    names are free again afterwards, for a keyring backend or anything else."""

    NAMES = frozenset({"yaml", "pydantic", "pydantic_settings", "fastapi", "fast_depends",
                       "starlette", "werkzeug", "flask"})

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in cls.NAMES:
            raise ModuleNotFoundError(f"{name} is not used by cidx-auth", name=name)


def _without_unused_imports() -> None:
    """``import httpx`` also imports httpx's own command line (click, rich, pygments)
    when they are installed, tens of milliseconds nobody here uses: mark it missing, and
    httpx falls back to a stub that is never called. dependency-injector is imported
    here, without its optional integrations (:class:`_Unused`)."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    if "dependency_injector" in sys.modules:
        return
    sys.meta_path.insert(0, _Unused)
    try:
        import dependency_injector.containers
        import dependency_injector.providers  # noqa: F401
    finally:
        sys.meta_path.remove(_Unused)


PR_SET_DUMPABLE = 4
"""Linux's ``prctl`` option (``<linux/prctl.h>``); ``PR_GET_DUMPABLE`` is 3."""


def no_core_dumps(*, not_dumpable: bool) -> None:
    """Keep this process's memory (a typed password, a decrypted session, the key of
    the per-user secret) out of core files: a soft ``RLIMIT_CORE`` of 0, so no core
    file is written beside the project. With ``not_dumpable``, on Linux, also
    ``PR_SET_DUMPABLE`` 0: no core at all, not even to a ``core_pattern`` pipe
    (systemd-coredump, apport) that ignores ``RLIMIT_CORE``, and no ptrace attach by
    other processes of the user. That needs ``ctypes`` (a few ms), so the cold paths,
    which only read the session, take the limit alone (``resource``: under 0.5 ms).
    Where neither exists (Windows), nothing is done; a refusal is not an error."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    with contextlib.suppress(ValueError, OSError):  # the soft limit is the one applied;
        # the hard one stays, so a server that `serve` starts may still enable its own
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    if not_dumpable and sys.platform.startswith("linux"):
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
            prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
            prctl.restype = ctypes.c_int
            prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (ImportError, OSError, AttributeError):
            pass


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    no_core_dumps(not_dumpable=False)  # the cold paths hold the session and its key
    try:
        if fast_token(sys.argv[1:]):
            return
        code = fast_status(sys.argv[1:])
        if code is not None:
            sys.exit(code)
        no_core_dumps(not_dumpable=True)  # before any password is read or decrypted
        _without_unused_imports()
        from cidx_auth.app.cli import main as full

        full()
    except KeyboardInterrupt:  # the CLI's commands say so themselves; this is the rest
        _stopped("interrupted", EXIT_INTERRUPTED)
    except Terminated:
        _stopped("terminated", EXIT_TERMINATED)
