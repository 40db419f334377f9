"""``python -m cidx_auth`` is ``cidx-auth``."""

from cidx_auth.app.entry import main

main()
