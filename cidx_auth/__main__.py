"""``python -m cidx_auth`` is ``cidx-auth``."""

from cidx_auth.cli import main

main()
