"""`make mutate`'s report: the mutation score of the core and of the safety adapters, part
by part and file by file.

Run after ``mutmut run``. It reads mutmut's verdicts (``mutmut results --all true``),
leaves out the equivalent mutants listed in ``tests/EQUIVALENT_MUTANTS.md``, runs the
hand-written mutants of ``hand_mutants.py`` (module constants, the breaker table,
defaults, the adapters' flags and statements) against the tests each names, and fails
when a part is under its goal.

A score is killed / total. A timeout, a suspicious verdict or an unchecked mutant is
not killed: fork mode once reported survivors as timeouts, so they are listed for a
rerun by hand (``mutmut run NAME``) rather than counted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.mutation.hand_mutants import HAND_MUTANTS, HandMutant

ROOT = Path(__file__).resolve().parents[2]
GOALS = {"cidx_auth/domain": 90.0, "cidx_auth/service": 85.0, "adapters": 90.0}
EQUIVALENTS = ROOT / "tests" / "EQUIVALENT_MUTANTS.md"
VERDICT = re.compile(r"^\s*(?P<name>(?:cidx_auth|adapters)\.\S+__mutmut_\d+): (?P<status>.+?)\s*$")
LISTED = re.compile(r"^- `(?P<name>(?:cidx_auth|adapters)\.\S+__mutmut_\d+)`: \S")
MODULE = re.compile(r"^(?P<module>[\w.]+?)\.x[_ǁ]")
COPIED = ("cidx_auth", "adapters", "refserver", "bench", "docs", "tests", "pyproject.toml",
          "LICENSE", "README.md")


def module_file(mutant: str) -> str:
    """``cidx_auth.domain.token.x_parse__mutmut_3`` -> ``cidx_auth/domain/token.py``."""
    match = MODULE.match(mutant)
    assert match, mutant
    return match["module"].replace(".", "/") + ".py"


def part_of(path: str) -> str:
    return next(part for part in GOALS if path.startswith(part + "/"))


def verdicts() -> dict[str, str]:
    out = subprocess.run([str(Path(sys.executable).parent / "mutmut"), "results", "--all",
                          "true"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {m["name"]: m["status"] for line in out.splitlines() if (m := VERDICT.match(line))}


def equivalents() -> set[str]:
    return {m["name"] for line in EQUIVALENTS.read_text().splitlines()
            if (m := LISTED.match(line))}


def hand_verdict(mutant: HandMutant | None) -> bool:
    """True when the mutant's tests fail with ``mutant`` applied to a copy of the tree
    (pytest's exit 1, or 2 when the mutant breaks an import); None runs every hand
    mutant's tests on the copy as it is. Any other exit (no tests, a usage or internal
    error) is no verdict: it stops the report."""
    with tempfile.TemporaryDirectory(prefix="cidx-hand-mutant-") as scratch:
        tree = Path(scratch)
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns(
                    "__pycache__", "mutation"))
            else:
                shutil.copy2(source, tree / name)
        if mutant is not None:
            target = tree / mutant.path
            target.write_text(target.read_text().replace(mutant.before, mutant.after))
        run = subprocess.run(
            [sys.executable, "-m", "pytest", *tests_of(mutant), "-x", "-q", "-p",
             "no:cacheprovider", "-p", "no:xdist", "--no-cov"],
            cwd=tree, capture_output=True, text=True)
        if run.returncode not in (0, 1, 2):
            raise SystemExit(f"no verdict for {mutant.name if mutant else 'the unmutated copy'}"
                             f" (pytest exit {run.returncode}):\n{run.stdout[-2000:]}")
        return run.returncode != 0


def tests_of(mutant: HandMutant | None) -> list[str]:
    if mutant is not None:
        return list(mutant.tests)
    return sorted({test for each in HAND_MUTANTS for test in each.tests})


def check_hand_mutants() -> None:
    """Every hand mutant still applies (its text occurs once), and the unmutated copy
    passes: otherwise every mutant would look killed."""
    for mutant in HAND_MUTANTS:
        if (ROOT / mutant.path).read_text().count(mutant.before) != 1:
            raise SystemExit(f"hand mutant no longer applies (edit hand_mutants.py): "
                             f"{mutant.name}")
    if hand_verdict(None):
        raise SystemExit("the hand mutants' tests fail on an unmutated copy of the tree")


def main() -> int:
    found = verdicts()
    listed = equivalents()
    stale = sorted(name for name in listed if found.get(name) == "killed")
    unknown = sorted(name for name in listed if name not in found)
    for name in stale:
        print(f"listed as equivalent but killed (remove it from the list): {name}")
    for name in unknown:
        print(f"listed as equivalent but mutmut has no such mutant: {name}")

    tally: dict[str, Counter[str]] = defaultdict(Counter)
    unkilled: list[str] = []
    for name, status in sorted(found.items()):
        path = module_file(name)
        if name in listed and status == "survived":
            tally[path]["equivalent"] += 1
            continue
        tally[path]["total"] += 1
        if status == "killed":
            tally[path]["killed"] += 1
        else:
            unkilled.append(f"{status:12} {name}")

    check_hand_mutants()
    with ThreadPoolExecutor(max_workers=2) as pool:
        hand = list(zip(HAND_MUTANTS, pool.map(hand_verdict, HAND_MUTANTS), strict=True))
    for mutant, killed in hand:
        tally[mutant.path]["total"] += 1
        tally[mutant.path]["killed"] += killed
        if not killed:
            unkilled.append(f"{'survived':12} hand: {mutant.name}")

    print("\nsurvivors and other mutants not killed:")
    print("\n".join(f"  {line}" for line in unkilled) or "  none")
    print(f"\n{'file':40} {'killed':>7} {'total':>6} {'score':>7} {'equiv.':>7}")
    parts: dict[str, Counter[str]] = defaultdict(Counter)
    for path, counts in sorted(tally.items()):
        parts[part_of(path)].update(counts)
        print(f"{path:40} {counts['killed']:7} {counts['total']:6} "
              f"{percent(counts):6.1f}% {counts['equivalent']:7}")
    failed = bool(stale or unknown)
    print()
    for part, goal in GOALS.items():
        counts = parts[part]
        score = percent(counts)
        verdict = "ok" if score >= goal else f"UNDER the goal of {goal:.0f} %"
        failed |= score < goal
        print(f"{part:40} {counts['killed']:7} {counts['total']:6} {score:6.1f}% "
              f"{counts['equivalent']:7}  {verdict}")
    print(f"hand-written mutants: {sum(k for _, k in hand)} of {len(hand)} killed")
    return 1 if failed else 0


def percent(counts: Counter[str]) -> float:
    return 100.0 * counts["killed"] / counts["total"] if counts["total"] else 100.0


if __name__ == "__main__":
    sys.exit(main())
