"""A stand-in for the CIDX server's authentication, for tests and demos.

It answers `/auth/login`, `/api/auth/refresh` and a few protected calls
with the real server's paths, bodies, status codes and messages (see
`shared/spec/server-contract.md`), and adds `/_admin` controls: statistics,
fault injection, revocation and a shiftable clock. `refserver.runner` serves
it over HTTP or HTTPS with HTTP/2 and runs it as a child process for tests.

The server itself (every module but two) never imports the client packages, so it
stays an independent model of the CIDX server. Only ``refserver.inprocess`` (``FakeCidx``,
which wires the real clients to the server) and ``refserver.testing`` (which re-exports
it, and the client's ``FakeClock``) import ``cidx_auth`` and ``adapters``, for users'
tests. The client never imports this package (an import-linter contract).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
