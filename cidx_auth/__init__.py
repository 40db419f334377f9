"""cidx-auth: JWT token management for the CIDX command-line client.

The public API is what ``__all__`` names, imported from here::

    from cidx_auth import open_project

    with open_project() as project, project.client() as cidx:
        for hit in cidx.query("where do we parse JWTs", "backend", limit=5):
            print(hit.similarity_score, repr(hit.location))  # the score may be None

``open_project`` and ``Project``; the API clients ``CidxClient`` and ``AsyncCidxClient``;
``CidxAuth`` for one's own ``httpx`` client; ``QueryRequest``, ``QueryResult`` and
``QueryHit``; and the errors a caller catches, one per thing to do about them (the
whole tree: :mod:`cidx_auth.domain.errors`). ``docs/api.md`` lists each with an example.
For tests, ``refserver.testing.FakeCidx`` (the ``server`` extra) gives clients wired to
an in-process CIDX server on a fake clock.

Users' tests may also build the token provider over ``adapters.memory``'s fakes with
``cidx_auth.app.container.Container`` (``Container(**memory_ports().wiring())``). Every
other module is internal: it may change between releases. The names load when
first used (PEP 562), so ``import cidx_auth`` costs nothing, and the ``cidx-auth token``
command, whose modules live under this package, stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from cidx_auth._version import __version__

if TYPE_CHECKING:  # what mypy and IDEs see; at run time each loads on first use
    from adapters.cidx_calls import ApiError
    from adapters.cidx_client import AsyncCidxClient, CidxClient
    from adapters.httpx_auth import CidxAuth
    from cidx_auth.app.project import Project, open_project
    from cidx_auth.domain.errors import (
        AccountLocked,
        AuthenticationError,
        CidxAuthError,
        ConfigurationError,
        InvalidCredentials,
        LockTimeout,
        LoggedOut,
        NotLoggedIn,
        ProtocolError,
        StorageError,
        TransportError,
    )
    from cidx_auth.domain.query import BadQuery, QueryRequest
    from cidx_auth.domain.results import QueryHit, QueryResult

_ERRORS = "cidx_auth.domain.errors"
_WHERE = {
    "open_project": "cidx_auth.app.project",
    "Project": "cidx_auth.app.project",
    "CidxClient": "adapters.cidx_client",
    "AsyncCidxClient": "adapters.cidx_client",
    "CidxAuth": "adapters.httpx_auth",
    "QueryRequest": "cidx_auth.domain.query",
    "QueryResult": "cidx_auth.domain.results",
    "QueryHit": "cidx_auth.domain.results",
    "CidxAuthError": _ERRORS,
    "ConfigurationError": _ERRORS,
    "BadQuery": "cidx_auth.domain.query",
    "AuthenticationError": _ERRORS,
    "InvalidCredentials": _ERRORS,
    "AccountLocked": _ERRORS,
    "NotLoggedIn": _ERRORS,
    "LoggedOut": _ERRORS,
    "TransportError": _ERRORS,
    "LockTimeout": _ERRORS,
    "ApiError": "adapters.cidx_calls",
    "StorageError": _ERRORS,
    "ProtocolError": _ERRORS,
}
"""Each public name and the module that defines it."""

__all__ = [
    "AccountLocked",
    "ApiError",
    "AsyncCidxClient",
    "AuthenticationError",
    "BadQuery",
    "CidxAuth",
    "CidxAuthError",
    "CidxClient",
    "ConfigurationError",
    "InvalidCredentials",
    "LockTimeout",
    "LoggedOut",
    "NotLoggedIn",
    "Project",
    "ProtocolError",
    "QueryHit",
    "QueryRequest",
    "QueryResult",
    "StorageError",
    "TransportError",
    "__version__",
    "open_project",
]


if not TYPE_CHECKING:  # hidden from mypy, so a misspelled import is its error, not Any

    def __getattr__(name: str) -> Any:
        """Load a public name on first use (and keep it: the next use is a plain lookup)."""
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module 'cidx_auth' has no attribute {name!r}")
        value = getattr(import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
