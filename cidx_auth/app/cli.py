"""The ``cidx-auth`` command line: the composition root that users run.

Exit codes (a contract, shown by ``--help``): see :data:`EXIT_CODES`. No traceback for
any of them; ``-v`` adds detail, never a secret. Heavy imports happen inside the
commands, so ``cidx-auth token`` with a fresh stored token loads almost nothing.
Ctrl-C and SIGTERM are also handled around the fast path, in ``cidx_auth.app.entry``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cidx_auth._version import __version__
from cidx_auth.domain.errors import CidxAuthError, ConfigurationError
from cidx_auth.domain.query import ACCURACIES, CHUNK_TYPES, BadQuery, QueryRequest
from cidx_auth.domain.token import JWS_ALGORITHMS

if TYPE_CHECKING:
    from adapters.approved_servers import ApprovedServers
    from adapters.cidx_client_files import RemoteConfig
    from adapters.project_layout import ProjectLayout, ProjectSettings
    from cidx_auth.domain.credentials import Credentials

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("cidx_auth")

EXIT_CODES = """\b
Exit codes:
  0        success
  1        unexpected error (a bug: run with -vv and report it)
  2        usage error, found before any request
  3        authentication refused (a login, stored credentials or a renewed token)
  4        the server cannot be used now: unreachable, timeout, 5xx or 429 after
           retries, circuit open, another cidx process still renewing the token
  5        local storage: files, lock file or secret unreadable, unwritable or
           not owned by you
  6        the server refused this request (400, 403, 404, 409, 422)
  130/143  interrupted by SIGINT (Ctrl-C) / SIGTERM"""
"""The table of ``decisions.md``, as ``--help`` prints it (``\\b``: keep the layout)."""


class Options:
    """The global options, resolved."""

    def __init__(self, project: Path | None, verbose: int, quiet: bool) -> None:
        self.project = project
        self.verbose = verbose
        self.quiet = quiet

    @functools.cached_property
    def root(self) -> Path:
        """The project directory, found when a command first needs it (``serve`` and
        ``demo`` do not) and refused (exit 5) if another user could have planted it."""
        from adapters.project_layout import check_project_dir, find_project_root

        root = self.project.absolute() if self.project else find_project_root(Path.cwd())
        check_project_dir(root)
        return root


HEADER_LOGGERS = ("httpx", "httpcore", "hpack", "h2")
"""Third-party loggers that see request headers: never below INFO, at any verbosity."""


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO][min(verbose, 1)]
    if verbose >= 2:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("cidx-auth: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The HTTP stack logs headers at DEBUG (hpack the decoded header list, h2 the
    # encoded block, httpcore the answer's headers): the bearer token, at any -v.
    for name in HEADER_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    if verbose < 3:
        logging.getLogger("filelock").setLevel(max(level, logging.INFO))


def handled(command: F) -> F:
    """Turn the project's errors into a message and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CidxAuthError as error:
            _fail(str(error), error.exit_code)
        except KeyboardInterrupt:  # one line, not click's "Aborted!" (see cidx_auth.app.entry)
            click.echo("cidx-auth: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `cidx-auth status | head`: the reader left, nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as error:
            logger.debug("unexpected error", exc_info=True)
            _fail(f"unexpected error ({type(error).__name__}); run with -vv for details", 1)

    return wrapper  # type: ignore[return-value]


class _PrintableFormatter(logging.Formatter):
    """Log lines may quote a server (an event's detail): shown without terminal controls."""

    def format(self, record: logging.LogRecord) -> str:
        from cidx_auth.app.render import printable

        return printable(super().format(record), keep_newlines=True)  # tracebacks at -vv


def _fail(message: str, code: int) -> None:
    from cidx_auth.app.render import printable  # a message may quote a server's detail

    click.echo(f"cidx-auth: error: {printable(message)}", err=True)
    sys.exit(code)


def _options() -> Options:
    return click.get_current_context().find_object(Options)  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="cidx-auth")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path),
              help="Project directory (default: nearest ancestor holding .code-indexer/).")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Errors only.")
@click.pass_context
@handled
def cli(ctx: click.Context, project: Path | None, verbose: int, quiet: bool) -> None:
    """Token management for the CIDX client: stored, refreshed, never expired."""
    _configure_logging(verbose, quiet)
    ctx.obj = Options(project, verbose, quiet)


def _also_after(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option given after the subcommand (``cidx-auth token -v``): merged into
    the group's, and logging configured again for it."""
    options = ctx.find_object(Options)
    if options is None or not value:
        return
    if param.name == "project":
        options.project = value
    elif param.name == "verbose":
        options.verbose += value
    elif param.name == "quiet":
        options.quiet = True
    _configure_logging(options.verbose, options.quiet)


def _global_parameters() -> list[click.Parameter]:
    """``--project``, ``-v`` and ``-q`` as each subcommand accepts them too."""
    return [
        click.Option(["--project"], type=click.Path(file_okay=False, path_type=Path),
                     expose_value=False, callback=_also_after, is_eager=True,
                     help="Project directory (as before the command)."),
        click.Option(["-v", "--verbose"], count=True, expose_value=False,
                     callback=_also_after, is_eager=True, help="More detail on stderr."),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False,
                     callback=_also_after, is_eager=True, help="Errors only."),
    ]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif os.environ.get("CIDX_PASSWORD"):
        password = os.environ["CIDX_PASSWORD"]
    elif sys.stdin.isatty():
        import getpass

        try:  # Ctrl-C goes on up: the one `interrupted` line, exit 130 (not "Aborted!")
            password = getpass.getpass("Password: ", stream=sys.stderr)
        except EOFError:
            raise ConfigurationError("no password: the prompt got end of input") from None
    else:
        raise ConfigurationError(
            "no password: pass it on stdin with --password-stdin, or set CIDX_PASSWORD"
        )
    if not password:
        raise ConfigurationError("the password is empty")
    return password


@cli.command()
@click.option("--server", help="The CIDX server's URL (default: from the CIDX client's "
                                ".remote-config, in a project it set up).")
@click.option("--username", help="Your CIDX username (default: as --server).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CA certificates to trust for this server (PEM).")
@click.option("--allow-alg", "allow_alg", multiple=True,
              type=click.Choice(JWS_ALGORITHMS, case_sensitive=False),
              help="Accept only tokens signed with ALG (repeatable; default: the algorithm "
                   "of the first token, pinned at login).")
@click.option("--store", "store_url", metavar="URL",
              help="Keep the token in Redis (redis://[USER@]HOST:PORT/DB, rediss://..., or "
                   "redis+sentinel://SENTINEL[:PORT],.../SERVICE/DB for a Sentinel-managed "
                   "primary), "
                   "shared by every host logged in as this user (env CIDX_STORE_URL "
                   "overrides). Query parameters: db, socket_timeout, "
                   "socket_connect_timeout, health_check_interval only. The password: env "
                   "CIDX_STORE_PASSWORD or a 0600 file named by CIDX_STORE_PASSWORD_FILE, "
                   "never in the URL; the sentinels' in CIDX_SENTINEL_PASSWORD.")
@click.option("--allow-plain-http", is_flag=True,
              help="Send the password and tokens to a non-loopback http:// server in clear "
                   "text (recorded in auth.json; anyone on the network can read them).")
@click.option("--migrate", is_flag=True,
              help="In a project the CIDX client set up: log in with its saved login, then "
                   "remove its weakly encrypted copies of the password (`cidx` asks again).")
@click.option("--yes", "-y", is_flag=True,
              help="Use the server the CIDX client's .remote-config names without asking, "
                   "even if you have not approved it (the non-interactive form).")
@handled
def login(server: str | None, username: str | None, password_stdin: bool,
          ca_bundle: Path | None, allow_alg: tuple[str, ...], store_url: str | None,
          allow_plain_http: bool, migrate: bool, yes: bool) -> None:
    """Log in, and store the credentials, settings and token for this project.

    Every login approves its server and user: a project the CIDX client set up for them
    is then used with no question. Taken from the project's .remote-config instead of
    --server, they are shown before the password is asked for, and confirmed at a
    terminal unless approved already."""
    from adapters.approved_servers import ApprovedServers
    from adapters.cidx_client_files import read_remote_config
    from adapters.project_layout import (
        ProjectLayout,
        ProjectSettings,
        check_server_url,
        save_settings,
        shared_store_url,
    )
    from adapters.secret_sources import secret_source
    from cidx_auth.app.project import check_plain_http, open_project_at
    from cidx_auth.domain.credentials import Credentials, trimmed_username
    from cidx_auth.domain.errors import DisallowedAlgorithm
    from cidx_auth.domain.moments import local_text
    from cidx_auth.domain.proxy import is_remote_plain_http

    if username is not None:  # stored and sent as the server reads it: trimmed
        username = trimmed_username(username)
    explicit_server = server is not None
    if server:  # before anything prints it or reaches a server (a store included)
        check_server_url(server, "--server")
    root = _options().root
    layout = ProjectLayout(root)
    with _undone_if_failed(layout):  # a failed login leaves no new .code-indexer
        if migrate and password_stdin:
            raise ConfigurationError("--migrate takes the password from the CIDX client's files; "
                                     "leave out --password-stdin")
        # A bare login (no --server or no --username) reuses what the project's own signed
        # auth.json records: it wins over the CIDX client's .remote-config and needs no
        # confirmation (the user's own cidx-auth wrote it). An explicit login never reads it,
        # so a file that no longer verifies cannot stand in the way of the login that fixes it.
        stored = None
        if not migrate and not (server and username):
            stored = _stored_for_login(layout, server)
        # The CIDX client's settings are read only when they are needed: a damaged or
        # local-mode .remote-config must not stand in the way of an explicit login.
        remote = None
        if migrate or (stored is None and not (server and username)):
            remote = read_remote_config(layout.directory)
        if migrate and remote is None:
            raise ConfigurationError(
                f"--migrate needs a project the CIDX client set up ({layout.remote_config} "
                "is not there)"
            )
        plain_http_kept = stored is not None and stored.plain_http
        if remote is not None and not server and not allow_plain_http:
            check_plain_http(remote.server_url, f"the CIDX client's {layout.remote_config}")
        if server and not (allow_plain_http or plain_http_kept):
            check_plain_http(server, "--server")
        from_settings = None  # what a bare login took from auth.json, said before the password
        if stored is not None:
            taken = [what for what, given in (("server", server), ("user", username))
                     if not given]
            server, username = server or stored.server_url, username or stored.username
            from_settings = (f"Server {server}, user {username} ({' and '.join(taken)} from "
                             f"{layout.settings})")
        server = server or (remote.server_url if remote else None)
        username = username or (trimmed_username(remote.username) if remote else None)
        if not server or not username:
            raise ConfigurationError(
                "nothing is stored in this project to log in with: run `cidx-auth login "
                "--server URL --username NAME` (and --ca-bundle FILE, --store URL if you "
                "use them)")
        approved = ApprovedServers()
        if remote is not None and not explicit_server:  # the project chose the server
            _confirm_project_server(layout, remote, username, approved, yes)
        canonical = {alg.upper(): alg for alg in JWS_ALGORITHMS}
        pinned = tuple(dict.fromkeys(canonical[a.upper()] for a in allow_alg)) or None
        if store_url is None and stored is not None:  # kept: checked (pinged) all the same
            store_url = stored.store_url
        if store_url is not None:  # checked before the password is asked for
            from adapters.redis_connection import check_store_url, refuse_password

            store_url = check_store_url(store_url)
            refuse_password(store_url, "--store")  # argv shows in `ps`: CIDX_STORE_PASSWORD
            _require("redis", "login --store (a token store in Redis)")
        # What a bare login keeps of the stored settings, unless given again: the CA bundle
        # with the pin of its content (a changed file needs --ca-bundle again), the store and
        # the plain-http opt-in. The algorithm is pinned again from the new token, as for any
        # login without --allow-alg (decisions.md, "Algorithms").
        ca_path = str(ca_bundle.absolute()) if ca_bundle else (stored.ca_bundle if stored else None)
        ca_pin = _ca_pin(ca_bundle) if ca_bundle else (stored.ca_bundle_sha256 if stored else None)
        settings = ProjectSettings(
            server.rstrip("/"), username, pinned, ca_path, store_url,
            plain_http=(allow_plain_http and is_remote_plain_http(server)) or plain_http_kept,
            ca_bundle_sha256=ca_pin,
        )
        if settings.plain_http:
            logger.warning("%s is plain http: your password and tokens cross the network in "
                           "clear text (you chose --allow-plain-http)", settings.server_url)
        # Local checks before the password is asked for, let alone sent: the per-user secret
        # (created by a first login) must be one nobody else could have chosen; before it,
        # the store CIDX_STORE_URL may name (its extra), so a refused login makes nothing.
        shared_store_url(settings)
        secret = secret_source()
        secret.value()
        if store_url is not None:  # the first thing sent anywhere, once local checks passed
            from adapters.redis_connection import ping

            ping(store_url)
        if migrate:
            assert remote is not None
            credentials = _migrated_login(layout, remote, settings)
        else:
            if from_settings is not None:  # after every local check: a refusal is one line
                _tell(from_settings)
            credentials = Credentials(username, _read_password(password_stdin))
        try:
            project = open_project_at(root, settings, secret=secret)  # read once
        except CidxAuthError as error:
            raise _with_login_command(error, layout, settings) from None
        try:
            # Every login starts the circuit afresh: the user says the server is worth trying
            # now (it may be back, or a typo in the URL was fixed), so no old failure blocks it.
            project.container.breaker().reset()
            try:
                session = project.provider.login(credentials)
            except DisallowedAlgorithm as refused:
                if pinned is None:
                    raise
                raise ConfigurationError(f"{refused} (given with --allow-alg)") from None
            save_settings(project.layout, settings)
            project.layout.logged_out.unlink(missing_ok=True)  # logged in here again
        except CidxAuthError as error:
            raise _with_login_command(error, layout, settings) from None
        finally:
            project.close()
        try:
            approved.add(settings.server_url, username)
        except CidxAuthError as error:  # logged in all the same: only a later question costs
            logger.warning("this server was not added to your approved servers (%s)", error)
        if migrate:
            from adapters.cidx_client_files import remove_weak_copies

            for removed in remove_weak_copies(layout.directory):
                _say(f"Removed {removed}")
            _say("`cidx` will ask for your password again the next time it needs it.")
        until = local_text(session.token.exp - session.clock_offset, time.time())
        pin = ", ".join(project.settings.algorithms)
        _say(f"Logged in as {username} at {settings.server_url} (token valid until {until}; "
                   f"tokens must be signed {pin})")
        # Which directory holds the login: a surprise here (an ancestor's) is worth seeing.
        kept = ("Settings and credentials" if project.shared_store
                else "Settings, credentials, token")
        _say(f"{kept} stored in {project.layout.directory}")


@cli.command()
@click.option("--refresh", is_flag=True,
              help="The server refused the stored token (a 401): renew it and print the "
                   "new one; no later command hands out the refused token.")
@handled
def token(refresh: bool) -> None:
    """Print a valid access token (for scripts), renewing it if needed."""
    from cidx_auth.app.fastpath import fresh_stored_token

    root = _options().root
    raw = None if refresh else fresh_stored_token(root)
    if raw is None:
        from cidx_auth.app.project import open_project_at

        project = open_project_at(root)
        try:
            if refresh:
                refused = project.container.token_store().load()
                if refused is not None:
                    project.provider.invalidate(refused.token.raw)
            raw = project.provider.get_token()
        finally:
            project.close()
    click.echo(raw)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handled
def status(as_json: bool) -> None:
    """Show the stored session, breaker and counters (never a secret); changes nothing.

    \b
    Its exit code is the answer for scripts:
      0  the next command reaches the server without asking anything
      3  not logged in, logged out, or nothing to renew the token with
      4  the circuit breaker is open
      5  local storage cannot be read
    (2 when the settings or the per-user secret are not usable, as for any command.)"""
    from cidx_auth.app.status import collect, exit_code, lines

    try:
        report = collect(_options().root)
    except CidxAuthError as error:
        if as_json:  # the object in every case: what stops status, and its code
            click.echo(json.dumps({"logged_in": False, "token_state": "none",
                                   "error": str(error)}, indent=2, sort_keys=True))
        raise
    if as_json:  # every field is documented in README: a stable interface
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    elif not _options().quiet:  # -q: the exit code is the answer
        for line in lines(report, time.time()):
            click.echo(line)
    sys.exit(exit_code(report))


@cli.command()
@click.argument("method", type=click.Choice(
    ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], case_sensitive=False))
@click.argument("path")
@click.option("--data", help="A JSON request body.")
@handled
def request(method: str, path: str, data: str | None) -> None:
    """Make an authenticated call and print the response body."""
    from cidx_auth.app.project import open_project_at

    body = None
    if data is not None:
        try:
            body = json.loads(data)
        except ValueError as error:
            raise ConfigurationError(f"--data is not valid JSON: {error}") from None
        except RecursionError:  # nested deeper than Python parses
            raise ConfigurationError("--data is nested too deeply to be read") from None
    if not path.startswith("/"):
        raise ConfigurationError("PATH must start with / (for example /api/repos)")
    project = open_project_at(_options().root)
    try:
        with project.client() as client:
            answer = client.request(method.upper(), path, json=body)
    finally:
        project.close()
    # json.dumps escapes every control character; a bare JSON string is shown as text.
    from cidx_auth.app.render import printable

    click.echo(printable(answer, keep_newlines=True) if isinstance(answer, str)
               else json.dumps(answer, indent=2))


QUERY_OPTION_NAMES = {"query_text": "TEXT", "repository_alias": "--repo",
                      "search_mode": "--fts/--semantic"}
"""The CLI's name for a query field where it is not the field's own with dashes."""


def _listed(values: tuple[str, ...]) -> list[str] | None:
    """Repeated and comma-separated values as one list (None when not given)."""
    items = [item.strip() for value in values for item in value.split(",")]
    return items or None


def _search_mode(fts: bool, semantic: bool) -> str | None:
    """Both flags: hybrid; one: that mode; neither: None, the server's default (semantic)."""
    return {(True, True): "hybrid", (True, False): "fts",
            (False, True): "semantic"}.get((fts, semantic))


@cli.command()
@click.argument("text")
@click.option("--repo", help="Repository alias to search (default: every repository you "
                             "can see).")
@click.option("--limit", "-l", type=int, default=10, show_default=True,
              help="Results to return, 1 to 100.")
@click.option("--language", help="Only files in this language (e.g. python).")
@click.option("--exclude-language", help="Leave out files in this language.")
@click.option("--path-filter", help="Only paths matching this glob (e.g. 'src/*').")
@click.option("--exclude-path", help="Leave out paths matching this glob.")
@click.option("--min-score", type=float, help="Lowest similarity score to show, 0 to 1.")
@click.option("--accuracy", type=click.Choice(ACCURACIES), help="Search accuracy "
                                                               "(server default: balanced).")
@click.option("--fts", is_flag=True, help="Full-text search (with --semantic: hybrid).")
@click.option("--semantic", is_flag=True, help="Semantic search (the server's default).")
@click.option("--case-sensitive", is_flag=True, help="Full-text: match case.")
@click.option("--fuzzy", is_flag=True, help="Full-text: allow typos (see --edit-distance).")
@click.option("--edit-distance", type=int, help="Full-text: typos allowed per word, 0 to 3.")
@click.option("--snippet-lines", type=int, help="Lines of context per hit, 0 to 50.")
@click.option("--regex", is_flag=True, help="Full-text: TEXT is a regular expression.")
@click.option("--file-extensions", multiple=True, metavar="EXT[,EXT...]",
              help="Only files with these extensions (comma-separated or repeated).")
@click.option("--time-range", metavar="FROM..TO",
              help="Git history: commits in this range (e.g. 2024-01-01..2024-12-31).")
@click.option("--time-range-all", is_flag=True, help="Git history: all of it.")
@click.option("--at-commit", metavar="REF", help="Search the code as it was at REF.")
@click.option("--diff-type", multiple=True, metavar="TYPE[,TYPE...]",
              help="Git history: only these kinds of change (comma-separated or repeated).")
@click.option("--author", help="Git history: only commits by this author.")
@click.option("--chunk-type", type=click.Choice(CHUNK_TYPES),
              help="Git history: commit messages or diffs only.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
@handled
def query(text: str, repo: str | None, as_json: bool, fts: bool, semantic: bool,
          file_extensions: tuple[str, ...], diff_type: tuple[str, ...],
          **options: Any) -> None:
    """Search the code of one repository, or of all you can see (semantic by default).

    Option values are checked against the server's limits before anything is sent."""
    from cidx_auth.app.project import open_project_at

    diff_types = _listed(diff_type)
    options.update(  # a flag not given is left to the server, not sent as false
        {name: value or None for name, value in options.items() if isinstance(value, bool)},
        search_mode=_search_mode(fts, semantic), file_extensions=_listed(file_extensions),
        diff_type=diff_types[0] if diff_types and len(diff_types) == 1 else diff_types)
    try:
        request = QueryRequest(text, repo, **options)
    except BadQuery as bad:
        option = QUERY_OPTION_NAMES.get(bad.field, "--" + bad.field.replace("_", "-"))
        raise ConfigurationError(f"{option}: {bad.reason}") from None
    project = open_project_at(_options().root)
    try:
        with project.client() as client:
            answer = client.query_json(request)
    finally:
        project.close()
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    from cidx_auth.app.render import results_table

    results_table(answer, spans=request.repository_alias is None,
                  repository=request.repository_alias)


@cli.command()
@click.option("--forget", is_flag=True, hidden=True,
              help="Accepted and ignored: logout always removes the stored password.")
@handled
def logout(forget: bool) -> None:
    """Log out here: remove the stored token and password; keep the settings.

    No command reaches the server until the next `cidx-auth login`, which then asks
    only for the password. The server has no route that ends a CLI session: the refresh
    token stays valid there until it expires (changing the password revokes them all).
    --forget is accepted and changes nothing (logout always forgets the password)."""
    from adapters.project_layout import ProjectLayout, load_settings
    from cidx_auth.app.project import open_project_at

    del forget  # the old "also forget the credentials": now what logout always does
    root = _options().root
    if load_settings(ProjectLayout(root)) is None:
        _say("Not logged in: nothing to remove")
        return
    project = open_project_at(root, offline=True)
    try:
        # The mark first: whatever fails after it, no command here reaches the server
        # until `login` (with a shared store, another host may renew the fleet's session).
        from adapters.file_io import write_private

        write_private(project.layout.logged_out, b"logged out by `cidx-auth logout`\n",
                      sweep_young=False, now=time.time())
        project.provider.logout()
    finally:
        project.close()
    _say("Logged out: the stored token and password are removed; `cidx-auth login` asks "
         "only for the password")


@cli.command()
@click.option("--yes", "-y", is_flag=True, help="Approve without asking (for scripts).")
@handled
def approve(yes: bool) -> None:
    """Approve the server and user this project's CIDX client settings name.

    A project the CIDX client set up (.code-indexer/.remote-config) is used only once
    its server and user are approved, since a cloned repository can name any server.
    Shows both and, at a terminal, asks first. Sends nothing."""
    from adapters.approved_servers import ApprovedServers, approval
    from adapters.cidx_client_files import read_remote_config
    from adapters.project_layout import ProjectLayout
    from cidx_auth.app.project import check_plain_http, server_named
    from cidx_auth.domain.credentials import trimmed_username

    layout = ProjectLayout(_options().root)
    remote = read_remote_config(layout.directory)
    if remote is None:
        raise ConfigurationError(
            f"nothing to approve: {layout.remote_config} is not there (only a project the "
            "CIDX client set up names a server); to log in elsewhere, run "
            "`cidx-auth login --server URL --username NAME`")
    check_plain_http(remote.server_url, f"the CIDX client's {layout.remote_config}")
    username = trimmed_username(remote.username)
    approved = ApprovedServers()
    named = f"the server {server_named(remote.server_url)} and user {username}"
    if approval(remote.server_url, username) in approved:
        _say(f"Already approved: {named}")
        return
    if not yes:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise ConfigurationError(
                f"{layout.remote_config} names {named}: run `cidx-auth approve --yes` to "
                "approve them without a question")
        if not _ask(f"{layout.remote_config} names {named}.",
                    "Send your queries, and the CIDX client's saved password, there? [y/N] "):
            raise ConfigurationError(f"not approved: {named}")
    approved.add(remote.server_url, username)
    _say(f"Approved {named}: commands in {layout.root} now use them")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True)
@click.option("--token-lifetime", type=click.IntRange(1, 86400), default=600,
              show_default=True, help="Access-token lifetime in seconds.")
@click.option("--user", "users", multiple=True, help="NAME:PASSWORD (repeatable).")
@click.option("--alg", type=click.Choice(["RS256", "HS256"]), default="RS256", show_default=True)
@click.option("--tls", type=click.Path(file_okay=False, path_type=Path),
              help="Serve HTTPS with HTTP/2, with a CA and certificate the server makes in "
                   "DIR (a directory only you can write; made 0700 if missing) and reuses "
                   "only when it made them.")
@click.option("--admin-token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the token /_admin wants (header X-Admin-Token) to this new file, "
                   "0600 (default: printed on stderr).")
@handled
def serve(host: str, port: int, token_lifetime: int, users: tuple[str, ...], alg: str,
          tls: Path | None, admin_token_file: Path | None) -> None:
    """Run the CIDX-compatible reference server (for tests and demos; needs the server
    extra)."""
    _require("server", "`cidx-auth serve` (the reference server)")
    argv = [sys.executable, "-m", "refserver", "--host", host, "--port", str(port),
            "--token-lifetime", str(token_lifetime), "--alg", alg]
    for user in users:
        argv += ["--user", user]
    if tls is not None:
        argv += ["--tls", str(tls)]
    if admin_token_file is not None:
        argv += ["--admin-token-file", str(admin_token_file)]
    # The client never imports the server: it runs as its own program.
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter, fixed module


@cli.command()
@click.option("--seconds", type=click.FloatRange(5, 3600), default=60, show_default=True)
@click.option("--processes", type=click.IntRange(1, 50), default=4, show_default=True)
@handled
def demo(seconds: float, processes: int) -> None:
    """Run the main job end to end against an embedded reference server (needs the server
    extra)."""
    _require("server", "`cidx-auth demo` (it runs the reference server)")
    from cidx_auth.app.demo import run_demo

    sys.exit(run_demo(seconds, processes))


@cli.command()
@click.option("--hours", type=click.FloatRange(0.1, 1000), default=None,
              help="Simulated hours  [default: 8; 24 with --fleet]")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--fleet", is_flag=True,
              help="Many processes on many hosts sharing one session in a replicated Redis, "
                   "in memory too, on a day of faults: lost answers, deaths mid-refresh, "
                   "replica lag and lost replies at their rates, and two failovers.")
@click.option("--hosts", type=click.IntRange(1, 500), default=None,
              help="With --fleet  [default: 50]")
@click.option("--processes-per-host", type=click.IntRange(1, 100), default=None,
              help="With --fleet  [default: 20]")
@click.option("--no-faults", is_flag=True, help="With --fleet: the same run without faults.")
@click.option("--stress", is_flag=True,
              help="With --fleet: a stress day, failovers at rates (2% of refreshes in "
                   "flight, 5% of ticks with writes unreplicated, 0.25 an hour at random: "
                   "14-24 a day) instead of the default day's two (one while a refresh is in "
                   "flight, one losing unreplicated writes, each at a seeded time).")
@handled
def simulate(hours: float | None, seed: int, fleet: bool, hosts: int | None,
             processes_per_host: int | None, no_faults: bool, stress: bool) -> None:
    """Simulate hours of use in memory on a fake clock (no network, no files): one
    process, or with --fleet many that share a session through a replicated Redis."""
    if fleet:
        if no_faults and stress:
            raise click.UsageError("--no-faults and --stress exclude each other")
        sys.exit(_simulate_fleet(hours, seed, hosts, processes_per_host, no_faults, stress))
    if hosts is not None or processes_per_host is not None or no_faults or stress:
        raise click.UsageError(
            "--hosts, --processes-per-host, --no-faults and --stress need --fleet")
    from cidx_auth.app.simulate import simulate as run

    report, counts = run(8.0 if hours is None else hours, seed)
    click.echo(f"simulated {report.hours:g} h: {report.operations} token operations")
    for name, count in sorted(counts.items()):
        click.echo(f"  {name:<20} {count}")
    click.echo(
        f"failed operations: {report.failed}, unusable tokens: {report.unusable_tokens}, "
        f"replays: {report.replays}"
    )
    sys.exit(0 if report.ok else 1)


def _simulate_fleet(hours: float | None, seed: int, hosts: int | None,
                    per_host: int | None, no_faults: bool, stress: bool) -> int:
    """``simulate --fleet``: run it, print its report, 0 if every goal was met. Each
    process's WARNING lines are counted in the report; ``-v`` prints them as well."""
    from dataclasses import replace

    from cidx_auth.app.fleet import FleetPlan, describe, simulate_fleet

    plan = FleetPlan(seed=seed)
    plan = replace(plan, hours=hours or plan.hours, hosts=hosts or plan.hosts,
                   per_host=per_host or plan.per_host)
    if no_faults:
        plan = plan.without_faults()
    if stress:
        plan = plan.stress_day()
    quiet = _options().verbose == 0
    before = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        report = simulate_fleet(plan)
    finally:
        logger.setLevel(before)
    for line in describe(report):
        click.echo(line)
    return 0 if report.ok else 1


@contextlib.contextmanager
def _undone_if_failed(layout: ProjectLayout) -> Iterator[None]:
    """If the block fails, remove the project directory this login created, with the
    lock and state files in it (never a token, password or settings), and only while no
    other process uses it: nothing else is in it, and each lock file can be locked here
    at once. A lock file another process holds or waits for is never removed (that
    would let a third process lock a new file beside it); then the directory stays."""
    created = []
    for directory in (layout.directory, *layout.directory.parents):
        if os.path.lexists(directory):
            break
        created.append(directory)
    try:
        yield
    except BaseException:
        if created:
            _remove_unused(layout, created)
        raise


def _remove_unused(layout: ProjectLayout, created: list[Path]) -> None:
    """The cleanup of :func:`_undone_if_failed`: all or nothing, best effort."""
    if os.name != "posix":
        return
    import fcntl

    locks = (layout.token_lock, layout.state_lock)
    ours = {path.name for path in (*locks, layout.state, layout.token_lock.with_name(
        layout.token_lock.name + ".excl"))}
    held: list[int] = []
    try:
        if not set(os.listdir(layout.directory)) <= ours:
            return  # a token, a password, settings or anything else: not ours to remove
        for path in locks:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            held.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # busy: BlockingIOError, kept
        if not set(os.listdir(layout.directory)) <= ours:
            return  # someone came meanwhile
        for name in ours:
            with contextlib.suppress(FileNotFoundError):
                (layout.directory / name).unlink()
        for directory in created:  # innermost first; a directory holding more stays
            directory.rmdir()
    except OSError:
        return  # left as it is: the next login uses it
    finally:
        for fd in held:
            os.close(fd)


def _stored_for_login(layout: ProjectLayout, server: str | None) -> ProjectSettings | None:
    """The project's signed settings a bare ``login`` reuses: those in ``auth.json``, when
    ``--server`` (if given) names the same server. A file that does not verify stops the
    login (exit 2), saying to give ``--server`` and ``--username``."""
    from adapters.project_layout import load_settings

    stored = load_settings(layout)
    if stored is None or not stored.username:
        return None
    if server is not None and server.rstrip("/") != stored.server_url:
        return None
    return stored


BARE_LOGIN = "`cidx-auth login`"


def _with_login_command(
    error: CidxAuthError, layout: ProjectLayout, settings: ProjectSettings
) -> CidxAuthError:
    """``error`` as it is when a bare ``cidx-auth login`` would log in to the same server
    and user; else its "run `cidx-auth login`" names the full command that would."""
    text = str(error)
    if BARE_LOGIN not in text or _bare_login_target(layout) == (settings.server_url,
                                                                 settings.username):
        return error
    full = f"`cidx-auth login --server {settings.server_url} --username {settings.username}`"
    reworded = type(error).__new__(type(error))
    reworded.__dict__.update(error.__dict__)
    reworded.args = (text.replace(BARE_LOGIN, full),)
    return reworded


def _bare_login_target(layout: ProjectLayout) -> tuple[str, str | None] | None:
    """The server and user a bare ``login`` would use now, None if it would stop."""
    from adapters.cidx_client_files import read_remote_config
    from cidx_auth.domain.credentials import trimmed_username

    try:
        stored = _stored_for_login(layout, None)
        if stored is not None:
            return stored.server_url, stored.username
        remote = read_remote_config(layout.directory)
    except CidxAuthError:
        return None
    return None if remote is None else (remote.server_url, trimmed_username(remote.username))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@handled
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  eval "$(cidx-auth completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(cidx-auth completion zsh)"    (in ~/.zshrc)
    fish:  cidx-auth completion fish > ~/.config/fish/completions/cidx-auth.fish"""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the choice lists only the shells click knows
    click.echo(completer(cli, {}, "cidx-auth", "_CIDX_AUTH_COMPLETE").source())


def _migrated_login(
    layout: ProjectLayout, remote: RemoteConfig, settings: ProjectSettings
) -> Credentials:
    """The CIDX client's saved login for ``--migrate``, after saying what will happen."""
    from adapters.cidx_client_files import read_client_credentials

    if (settings.server_url, settings.username) != (remote.server_url, remote.username):
        raise ConfigurationError(
            "--migrate takes the server and user from the CIDX client's .remote-config "
            f"({remote.username} at {remote.server_url}); leave out --server and --username"
        )
    credentials = read_client_credentials(layout.directory, layout.root, remote)
    _say(
        f"Importing the CIDX client's login ({remote.username} at {remote.server_url}). "
        "Once it works, its weakly encrypted copies of your password (.creds, and "
        "encrypted_credentials in .remote-config) will be removed."
    )
    return credentials


def _confirm_project_server(
    layout: ProjectLayout, remote: RemoteConfig, username: str, approved: ApprovedServers,
    yes: bool,
) -> None:
    """Before a password goes to a server the project's ``.remote-config`` chose: name the
    server and user, and unless they are approved (or ``--yes``), ask at a terminal."""
    from adapters.approved_servers import approval
    from cidx_auth.app.project import server_named

    named = (f"Server {server_named(remote.server_url)}, user {username} "
             f"(from {layout.remote_config})")
    if yes or approval(remote.server_url, username) in approved:
        if not _options().quiet:
            _tell(named)
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        from cidx_auth.app.project import not_approved

        raise ConfigurationError(not_approved(  # names them: one line, not two
            layout, remote.server_url, username,
            "run `cidx-auth login --yes` (or `--server URL`) to log in there"))
    if not _ask(named, "You have not used this server before. Send your password there? "
                       "[y/N] "):
        raise ConfigurationError("not logged in: you did not confirm the server")


def _ask(about: str, question: str) -> bool:
    """A yes/no question on stderr, after the line that says what it is about (shown with
    ``-q`` too: a question must name what it asks about), answered on stdin; no (or end of
    input) is False. Ctrl-C goes on up: the one `interrupted` line, exit 130."""
    from cidx_auth.app.render import printable

    click.echo(printable(about), err=True)
    click.echo(question, err=True, nl=False)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _say(message: str) -> None:
    """A line for the user on stdout, unless ``-q``; terminal controls from a file,
    the environment or a server removed."""
    from cidx_auth.app.render import printable

    if not _options().quiet:
        click.echo(printable(message))


def _tell(message: str) -> None:
    """A line for the user on stderr (beside a question), made printable as :func:`_say`;
    none with ``-q`` (a question itself is still asked)."""
    from cidx_auth.app.render import printable

    if not _options().quiet:
        click.echo(printable(message), err=True)


def _require(extra: str, what: str) -> None:
    """Exit 2, on one line naming the extra and how to install it, unless it is installed
    (the one table and the one question: :mod:`adapters.extras`)."""
    from adapters.extras import require

    require(extra, what)


def _ca_pin(ca_bundle: Path | None) -> str | None:
    """The SHA-256 of the CA bundle's content: later commands trust that content only."""
    if ca_bundle is None:
        return None
    from adapters.settings_seal import ca_digest

    return ca_digest(ca_bundle)


for _command in cli.commands.values():  # every command, the ones defined elsewhere too
    _command.params.extend(_global_parameters())


def main(argv: list[str] | None = None) -> None:
    """The full command line (``cidx_auth.app.entry`` tries the token fast path first).

    click's own errors (an unknown option, a bad choice, a missing argument) come out as
    every other error does: one line ``cidx-auth: error: ...``, exit 2; ``--help`` and
    ``--version`` print as usual."""
    no_args = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
    try:
        code = cli.main(args=argv, prog_name="cidx-auth", standalone_mode=False)
    except no_args as error:  # bare `cidx-auth`: the help as it is, not one squeezed line
        click.echo(error.format_message(), err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        _fail(_one_line(error.format_message()), error.exit_code)
    except click.Abort:  # click's prompt turned Ctrl-C (or end of input) into this
        click.echo("cidx-auth: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: str) -> str:
    return " ".join(message.split())
