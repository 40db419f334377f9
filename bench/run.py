"""Run every benchmark script in this folder (``make bench``)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
for script in sorted(here.glob("bench_*.py")):
    if len(sys.argv) > 1 and not any(name in script.name for name in sys.argv[1:]):
        continue
    runpy.run_path(str(script), run_name="__main__")
    print()
