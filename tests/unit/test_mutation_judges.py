"""`make mutate` judges a mutant by its module's own tests (tests/mutation/judges.py)."""

from __future__ import annotations

import pytest

from tests.mutation.judges import importers, judged_module, judges


def test_a_mutant_names_its_module_and_nothing_else_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, module in [
        ("adapters.file_io.x_read_regular__mutmut_3", "adapters.file_io"),
        ("adapters.file_lock.xǁLockǁ_take__mutmut_12", "adapters.file_lock"),
        ("cidx_auth.domain.token.x_parse_access_token__mutmut_1", "cidx_auth.domain.token"),
    ]:
        monkeypatch.setenv("MUTANT_UNDER_TEST", name)
        assert judged_module() == module
    for other in ("stats", "fail", "", "list_all_tests"):
        monkeypatch.setenv("MUTANT_UNDER_TEST", other)
        assert judged_module() is None
    monkeypatch.delenv("MUTANT_UNDER_TEST")
    assert judged_module() is None


def test_unit_tests_and_the_modules_own_integration_tests_judge_it() -> None:
    own = importers("adapters.redis_token_store")
    assert "tests/integration/test_redis_store.py" in own
    assert "tests/integration/test_lock_trouble.py" not in own
    assert judges("adapters.redis_token_store", "tests/integration/test_redis_store.py")
    assert judges("adapters.redis_token_store", "tests/unit/test_provider.py")
    assert not judges("adapters.redis_token_store", "tests/integration/test_lock_trouble.py")
    # `from adapters.file_lock import ...` and `from adapters import file_lock` both count
    assert "tests/integration/test_lock_trouble.py" in importers("adapters.file_lock")
