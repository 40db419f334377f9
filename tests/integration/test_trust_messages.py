"""The advice in a trust refusal, word for word (decisions.md, "Trust boundaries"): what
the user reads when a path another user could control is refused, with and without the
caller's way out; and a failed system call with no reason of its own is named by its
type. We run as root; "another user" is a file chowned to an unused uid."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.file_io import check_trusted, storage_error
from cidx_auth.domain.errors import StorageError

OTHER_UID = 2002

needs_root = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                                reason="needs root, to make files owned by another uid")


def theirs(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(b"k" * 32)
    os.chmod(path, 0o600)
    os.chown(path, OTHER_UID, OTHER_UID)
    return path


@needs_root
def test_another_users_file_is_refused_with_the_advice_alone(tmp_path: Path) -> None:
    path = theirs(tmp_path)
    with pytest.raises(StorageError) as refused:
        check_trusted(path, "CIDX_SECRET_FILE")
    assert str(refused.value) == (
        f"CIDX_SECRET_FILE {path} is owned by another user (uid {OTHER_UID}): cidx-auth "
        "will not use it, since another user could have put it there or could change it. "
        "If you did not create it, do not use it: remove it, or ask its owner to."
    )


@needs_root
def test_the_callers_way_out_follows_the_advice(tmp_path: Path) -> None:
    path = theirs(tmp_path)
    with pytest.raises(StorageError) as refused:
        check_trusted(path, "CIDX_SECRET_FILE", elsewhere="Or unset CIDX_SECRET_FILE.")
    assert str(refused.value).endswith(
        "If you did not create it, do not use it: remove it, or ask its owner to. "
        "Or unset CIDX_SECRET_FILE."
    )


def test_an_error_without_a_reason_is_named_by_its_type(tmp_path: Path) -> None:
    path = tmp_path / ".token"
    assert str(storage_error("remove", path, TimeoutError())) == (
        f"could not remove {path}: TimeoutError"
    )
    assert str(storage_error("remove", path, PermissionError(13, "Permission denied"))) == (
        f"could not remove {path}: Permission denied"
    )
