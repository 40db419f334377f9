"""The optional dependencies (``pyproject.toml``'s extras): one table, one question.

A plain ``pip install cidx-auth`` holds the client. Three features need more, each an
extra of its own (:data:`EXTRAS`): the reference server (``serve``, ``demo``), a token
store in Redis (``login --store``, ``CIDX_STORE_URL``) and the per-user secret in the OS
keyring (``CIDX_SECRET_BACKEND=keyring``). Every place that uses one asks
:func:`require` first, before anything is read, written or sent: a missing extra is a
usage error (exit 2) on one line that names the extra and the command that installs it,
not a traceback or a half-made ``.code-indexer/``.

Whether an extra is installed is decided by :func:`installed`, from the import system
alone (``importlib.util.find_spec``: nothing is imported, so asking costs well under a
millisecond). ``tests/unit/test_extras.py`` holds the table to ``pyproject.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cidx_auth.domain.errors import ConfigurationError


@dataclass(frozen=True)
class Extra:
    """One extra: what it is for, the modules it brings, the requirements it installs."""

    name: str
    needed_by: str
    modules: tuple[str, ...]
    """The top-level import names that must be importable."""
    requirements: tuple[str, ...]
    """The extra's requirements, as ``pyproject.toml`` lists them (for ``pipx inject``)."""


EXTRAS = {
    extra.name: extra
    for extra in (
        Extra("server", "the reference server: `cidx-auth serve` and `cidx-auth demo`",
              ("starlette", "hypercorn", "jwt", "trustme"),
              ("starlette>=0.37", "hypercorn>=0.17", "pyjwt[crypto]>=2.9", "trustme>=1.1")),
        Extra("redis", "a token store in Redis: `login --store redis://...`, CIDX_STORE_URL",
              ("redis",), ("redis>=6.0",)),
        Extra("keyring", "the per-user secret in the OS keyring: CIDX_SECRET_BACKEND=keyring",
              ("keyring",), ("keyring>=24",)),
    )
}
"""Every extra a command may need (``bench``, ``mutate`` and ``dev`` are for contributors)."""


class MissingExtra(ConfigurationError):
    """A command needs an extra that is not installed (exit 2, before anything is done)."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here; nothing is imported to find out."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it; a broken sys.modules entry
        return False


def missing(name: str) -> list[str]:
    """The modules of extra ``name`` that cannot be imported here (``[]``: installed)."""
    return [module for module in EXTRAS[name].modules if not installed(module)]


def install_command(name: str) -> str:
    """How to install extra ``name``, for pip and for pipx users (pipx keeps cidx-auth in
    a venv of its own: the extra's packages are injected into it)."""
    extra = EXTRAS[name]
    packages = " ".join(f"'{requirement}'" for requirement in extra.requirements)
    return f"pip install 'cidx-auth[{name}]' (with pipx: pipx inject cidx-auth {packages})"


def require(name: str, what: str, otherwise: str = "") -> None:
    """:class:`MissingExtra` unless extra ``name`` is installed; ``what`` names what
    needs it (``"`cidx-auth serve`"``), ``otherwise`` a way to do without it."""
    absent = missing(name)
    if absent:
        instead = f", or {otherwise}" if otherwise else ""
        raise MissingExtra(
            f"{what} needs the {name} extra ({', '.join(absent)} not installed): "
            f"{install_command(name)}{instead}"
        )
