"""Command-line flags of `python -m refserver`, and their inverse.

`config_to_argv` turns a `ServerConfig` back into flags, which is how the
test harness hands a config to a child process: one path for settings, so
what a test configures is exactly what a person could type.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from refserver.config import (
    DEFAULT_REFRESH_LIFETIME,
    DEFAULT_REPOSITORIES,
    DEFAULT_ROLE,
    DEFAULT_TOKEN_LIFETIME,
    ROLES,
    ServerConfig,
)

DEFAULT_USERS = {"alice": "secret"}
"""Who may log in when no `--user` is given."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for `python -m refserver`."""
    parser = argparse.ArgumentParser(
        prog="python -m refserver",
        description="Serve the CIDX reference server (loopback only unless --host says so).")
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, default=8090, help="port to bind; 0 picks a free one")
    add("--user", action="append", default=[], metavar="NAME:PASSWORD[:ROLE]",
        help="a user who may log in (repeatable; default alice:secret)")
    add("--mfa-user", action="append", default=[], metavar="NAME",
        help="a user whose login answers mfa_required")
    add("--expired-user", action="append", default=[], metavar="NAME",
        help="a user whose password has expired (login answers 403)")
    add("--token-lifetime", type=int, default=DEFAULT_TOKEN_LIFETIME, metavar="SECONDS")
    add("--refresh-lifetime", type=int, default=DEFAULT_REFRESH_LIFETIME, metavar="SECONDS")
    add("--alg", choices=("RS256", "HS256"), default="RS256", help="access-token algorithm")
    add("--secret", default=None, help="fixed HS256 secret (default: random per start)")
    add("--issuer", default=None, help="base URL for WWW-Authenticate (default: request URL)")
    add("--repo", action="append", default=[], metavar="ALIAS",
        help=f"a known repository alias (repeatable; default {', '.join(DEFAULT_REPOSITORIES)})")
    add("--login-delay", type=float, default=0.0, metavar="SECONDS",
        help="time each password check takes, like the real server's bcrypt")
    add("--clock-offset", type=float, default=0.0, metavar="SECONDS",
        help="shift the server's clock from the start")
    add("--tls", type=Path, default=None, metavar="DIR",
        help="serve HTTPS (and HTTP/2); CA, cert and key live in DIR, a directory only "
             "you can write (made 0700 if missing); the server makes them there and "
             "reuses only what it made")
    add("--admin-token-file", type=Path, default=None, metavar="PATH",
        help="write the token /_admin wants (header X-Admin-Token) to PATH, a new file "
             "made 0600 and removed at exit (default: print it on stderr)")
    add("--stop-on-stdin-eof", action="store_true",
        help="shut down when standard input closes (so a dead parent leaves no orphan)")
    return parser


def parse_user(spec: str) -> tuple[str, str, str | None]:
    """Split `NAME:PASSWORD[:ROLE]`; a password may itself contain colons."""
    name, sep, rest = spec.partition(":")
    if not name or not sep or not rest:
        raise ValueError(f"--user wants NAME:PASSWORD[:ROLE], got {spec!r}")
    password, sep, role = rest.rpartition(":")
    if sep and password and role in ROLES:
        return name, password, role
    return name, rest, None


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The `ServerConfig` the parsed flags describe."""
    users: dict[str, str] = {}
    roles: dict[str, str] = {}
    for spec in args.user or [f"{n}:{p}" for n, p in DEFAULT_USERS.items()]:
        name, password, role = parse_user(spec)
        users[name] = password
        if role is not None:
            roles[name] = role
    return ServerConfig(
        users=users, roles=roles, token_lifetime=args.token_lifetime, alg=args.alg,
        refresh_lifetime=args.refresh_lifetime, issuer=args.issuer,
        mfa_users=frozenset(args.mfa_user), expired_password_users=frozenset(args.expired_user),
        repositories=tuple(args.repo) or DEFAULT_REPOSITORIES, login_delay=args.login_delay,
        hs256_secret=args.secret, clock_offset=args.clock_offset,
    )


def config_to_argv(config: ServerConfig) -> list[str]:
    """Flags that make `python -m refserver` serve `config`."""
    argv: list[str] = []
    for name, password in config.users.items():
        role = config.roles.get(name)
        if role is None and ":" in password:
            # Spell the role out, or a password like "x:admin" would read as one.
            role = DEFAULT_ROLE
        argv += ["--user", f"{name}:{password}" + (f":{role}" if role else "")]
    argv += [flag for name in sorted(config.mfa_users) for flag in ("--mfa-user", name)]
    argv += [flag for name in sorted(config.expired_password_users)
             for flag in ("--expired-user", name)]
    argv += [flag for alias in config.repositories for flag in ("--repo", alias)]
    argv += ["--token-lifetime", str(config.token_lifetime),
             "--refresh-lifetime", str(config.refresh_lifetime), "--alg", config.alg,
             "--login-delay", repr(config.login_delay),
             "--clock-offset", repr(config.clock_offset)]
    if config.issuer is not None:
        argv += ["--issuer", config.issuer]
    if config.hs256_secret is not None:
        argv += ["--secret", config.hs256_secret]
    return argv


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse `argv` (default: the process arguments)."""
    return build_parser().parse_args(argv)
