"""Which tests judge a mutant under ``make mutate``: a pytest plugin (``-p``).

mutmut runs, for each mutant, every test its stats run saw reach the mutated function.
For the adapters under the whole integration suite that is most of it: every test that
writes a file reaches ``file_io``, every test with a server reaches ``httpx_gateway``,
and a mutant that survives (an equivalent one, say) runs them all, processes and
servers included. A run took hours on two cores.

Here a mutant in module ``M`` is judged by the tests mutmut chose for it that are in
``tests/unit`` (where the core and the adapters' rules are tested in-process) or in an
integration test file that imports ``M`` itself: the module's own tests. An integration
test that reaches ``M`` only through other modules is left out for that mutant: it is
there for those modules, and ``M``'s own tests pin what ``M`` does. Outside a mutant's
run (mutmut's stats and clean runs, a plain ``pytest``) nothing is deselected.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MUTANT = re.compile(r"^(?P<module>(?:cidx_auth|adapters)(?:\.\w+)+?)\.x[_ǁ].*__mutmut_\d+$")


def judged_module() -> str | None:
    """The module of the mutant this process runs the tests of; None outside one."""
    match = MUTANT.match(os.environ.get("MUTANT_UNDER_TEST", ""))
    return match.group("module") if match else None


@cache
def importers(module: str) -> frozenset[str]:
    """The integration test files (relative paths) that import ``module`` by name."""
    package, _, name = module.rpartition(".")
    imports = re.compile(
        rf"^\s*(?:from {re.escape(module)} import|import {re.escape(module)}\b|"
        rf"from {re.escape(package)} import [^\n]*\b{re.escape(name)}\b)",
        re.MULTILINE,
    )
    folder = ROOT / "tests" / "integration"
    return frozenset(
        path.relative_to(ROOT).as_posix() for path in sorted(folder.glob("*.py"))
        if imports.search(path.read_text(encoding="utf-8"))
    )


def judges(module: str, test_path: str) -> bool:
    """Whether the test in ``test_path`` (relative, POSIX) judges mutants of ``module``."""
    return test_path.startswith("tests/unit/") or test_path in importers(module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    module = judged_module()
    if module is None:
        return
    kept: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        path = Path(str(item.path)).resolve().relative_to(ROOT).as_posix()
        (kept if judges(module, path) else left).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept
