"""Adapters: the ports of ``cidx_auth.ports`` implemented with real technology.

Only the composition root (``cidx_auth.container`` and the CLI) imports these.
"""
