"""`python -m refserver`: see `refserver.cli` for the flags."""

from __future__ import annotations

import sys

from refserver.runner import main

if __name__ == "__main__":
    sys.exit(main())
