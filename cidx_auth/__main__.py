"""``python -m cidx_auth`` is ``cidx-auth``."""

from cidx_auth.entry import main

main()
