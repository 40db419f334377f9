"""``python -m tests.soak``: see :mod:`tests.soak.driver`."""

import sys

from tests.soak.driver import main

sys.exit(main())
