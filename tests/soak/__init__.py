"""The soak (``make soak``): a chaos run of the fleet against the reference server.

Not collected by pytest (no ``test_*`` module here) and not in the wheel (only
``cidx_auth``, ``adapters`` and ``refserver`` are). Its verdict logic is pinned by
``tests/integration/test_soak_verdict.py``.
"""
