"""Adapters: the ports of ``cidx_auth.ports`` implemented with real technology.

Inside cidx-auth only the composition root (``cidx_auth.app.container``, ``cidx_auth.app.project``
and the CLI) imports these; the core never does. Users' code imports the public API from
``cidx_auth`` instead (which re-exports the clients, ``CidxAuth`` and ``ApiError`` from
here), and may import these two modules directly:

* ``adapters.memory``: the in-memory fakes for every port (``FakeClock``, the memory
  stores, ``ScriptedGateway``, ``memory_ports``), for tests that build the token provider
  through ``cidx_auth.app.container.Container`` (public for that use, as ``docs/api.md`` says);
* ``adapters.httpx_auth``: ``CidxAuth`` (also ``cidx_auth.CidxAuth``), the ``httpx.Auth``
  for one's own ``httpx.Client``.

Every other module here is internal: its names may change between releases.
"""
