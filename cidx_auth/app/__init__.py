"""The application shell: the ``cidx-auth`` command line and one project's wiring.

The core (``cidx_auth.domain``, ``cidx_auth.ports``, ``cidx_auth.service``) decides; the
adapters (the top-level ``adapters`` package) do the I/O; this package enters, wires and
prints. ``entry`` is the console script, ``fastpath`` and ``status`` the cold paths, ``cli``
the click commands, ``project`` and ``container`` the composition root (architecture.md).

Deliberately empty: ``cidx-auth token`` imports ``cidx_auth.app.entry``, and whatever this
module imported would be paid on that cold path too.
"""
