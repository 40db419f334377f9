"""Run every benchmark script in this folder (``make bench``); name some to run only those."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
failed = []
for script in sorted(here.glob("bench_*.py")):
    if len(sys.argv) > 1 and not any(name in script.name for name in sys.argv[1:]):
        continue
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:  # a script may end with sys.exit(status)
        if stop.code not in (None, 0):
            failed.append(script.name)
    print()
if failed:
    sys.exit(f"benchmarks that failed: {', '.join(failed)}")
