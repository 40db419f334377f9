"""Trust boundaries on real files (issue 15, items 1, 2 and 8): a directory or secret
another user owns, or could have written, is refused (exit 5) and left as it is.

We run as root, who ignores mode bits; "another user" is a file chowned to an unused uid.
Owned by root counts as owned by the user (decisions.md, "Trust boundaries")."""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.file_io import check_trusted, ensure_private_dir, read_private
from adapters.keyring_secret import KeyringSecret
from adapters.project_layout import (
    ProjectLayout,
    check_project_dir,
    find_project_root,
    load_settings,
)
from adapters.secret_sources import FileSecret
from adapters.user_secret import UserSecret
from cidx_auth.domain.errors import StorageError
from tests.integration.conftest import Files
from tests.integration.storage_helpers import ALICE

OTHER_UID = 2002

pytestmark = [
    pytest.mark.posix,
    pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                       reason="needs root, to make files owned by another uid"),
]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def make_dir(path: Path, bits: int, uid: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    os.chmod(path, bits)
    return path


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# --- the rule -----------------------------------------------------------------------


def test_another_users_directory_is_refused_with_what_to_do(tmp_path: Path) -> None:
    theirs = make_dir(tmp_path / "theirs", 0o700, OTHER_UID)
    with pytest.raises(StorageError) as refused:
        check_trusted(theirs, "the place")
    message = str(refused.value)
    assert f"the place {theirs} is owned by another user (uid {OTHER_UID})" in message
    assert "If you did not create it, do not use it: remove it" in message


@pytest.mark.parametrize(("bits", "who"), [(0o777, "every user"), (0o770, "its group")])
def test_a_directory_others_can_write_is_refused(tmp_path: Path, bits: int, who: str) -> None:
    wide = make_dir(tmp_path / "wide", bits)
    with pytest.raises(StorageError, match=rf"can be written by {who} \(mode {bits:03o}\)") \
            as refused:
        check_trusted(wide, "the place")
    assert f"run `chmod go-w {wide}`" in str(refused.value)


def test_a_group_writable_directory_passes_where_the_group_may_write(tmp_path: Path) -> None:
    shared = make_dir(tmp_path / "shared", 0o770)
    assert check_trusted(shared, "the place", group_may_write=True) is not None
    with pytest.raises(StorageError, match="every user"):
        check_trusted(make_dir(tmp_path / "open", 0o777), "the place", group_may_write=True)


def test_a_parent_everyone_can_write_is_refused_unless_it_is_sticky(tmp_path: Path) -> None:
    loose = make_dir(tmp_path / "loose", 0o777)
    with pytest.raises(StorageError, match=rf"is in {loose}, which can be written by every"):
        check_trusted(make_dir(loose / "mine", 0o700), "the place")
    sticky = make_dir(tmp_path / "sticky", 0o1777)  # like /tmp: nobody replaces my names
    assert check_trusted(make_dir(sticky / "mine", 0o700), "the place") is not None


def test_a_parent_owned_by_another_user_is_refused_before_anything_is_made_there(
    tmp_path: Path,
) -> None:
    theirs = make_dir(tmp_path / "theirs", 0o755, OTHER_UID)
    with pytest.raises(StorageError, match=rf"is in {theirs}, which is owned by another user"):
        check_trusted(theirs / "anything", "the place")  # even before it exists
    with pytest.raises(StorageError, match="owned by another user"):
        ensure_private_dir(theirs / ".code-indexer")
    assert os.listdir(theirs) == []


def test_a_link_is_refused_unless_allowed_and_then_its_target_is_judged(tmp_path: Path) -> None:
    target = make_dir(tmp_path / "target", 0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(StorageError, match="is a symbolic link"):
        check_trusted(link, "the place")
    assert check_trusted(link, "the place", link_ok=True) is not None
    os.chown(target, OTHER_UID, OTHER_UID)
    with pytest.raises(StorageError, match="owned by another user"):
        check_trusted(link, "the place", link_ok=True)


# --- the project directory ------------------------------------------------------------


def test_the_search_stops_at_a_planted_ancestor_and_refuses_it(tmp_path: Path) -> None:
    (tmp_path / ".code-indexer").mkdir()  # a trusted one further up is not a way round
    planted = make_dir(tmp_path / "shared" / ".code-indexer", 0o777, OTHER_UID)
    clone = tmp_path / "shared" / "clone" / "src"
    clone.mkdir(parents=True)
    with pytest.raises(StorageError) as refused:
        find_project_root(clone)
    message = str(refused.value)
    assert f"the project directory {planted} is owned by another user" in message
    assert "--project DIR" in message
    assert mode(planted) == 0o777 and os.listdir(planted) == []


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-directory", "dangling"])
def test_the_search_stops_at_a_symlinked_store(tmp_path: Path, dangling: bool) -> None:
    elsewhere = tmp_path / "elsewhere"
    if not dangling:
        make_dir(elsewhere, 0o700)
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / ".code-indexer").symlink_to(elsewhere)
    with pytest.raises(StorageError, match="is a symbolic link"):
        find_project_root(tmp_path / "project")


@pytest.mark.usefixtures("umask_000")
def test_missing_directories_are_each_created_0700_whatever_the_umask(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / ".code-indexer"
    ensure_private_dir(deep)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", deep)] == [0o700] * 3


def test_a_group_writable_store_of_ones_own_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_dir(tmp_path / ".code-indexer", 0o770)
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"):
        ensure_private_dir(store)
    assert mode(store) == 0o700
    assert "had mode 770; setting it to 700" in caplog.text


def test_the_cidx_clients_group_writable_directory_keeps_its_mode(tmp_path: Path) -> None:
    store = make_dir(tmp_path / ".code-indexer", 0o775)
    (store / ".remote-config").write_text("{}")
    ensure_private_dir(store)
    assert mode(store) == 0o775


def test_the_cidx_clients_directory_is_still_held_to_ownership(tmp_path: Path) -> None:
    store = make_dir(tmp_path / ".code-indexer", 0o755, OTHER_UID)
    (store / ".remote-config").write_text("{}")
    with pytest.raises(StorageError, match="owned by another user"):
        check_project_dir(tmp_path)
    assert mode(store) == 0o755


@pytest.mark.parametrize(("bits", "uid"), [(0o777, 0), (0o755, OTHER_UID)],
                         ids=["everyone-writes", "another-user"])
def test_a_store_that_is_not_the_users_is_refused_and_never_chmoded(
    tmp_path: Path, bits: int, uid: int
) -> None:
    store = make_dir(tmp_path / ".code-indexer", bits, uid)
    with pytest.raises(StorageError):
        ensure_private_dir(store)
    assert mode(store) == bits and os.stat(store).st_uid == uid


def test_a_file_in_the_store_owned_by_another_user_is_refused_not_set_aside(
    project: Path, config_dir: Path
) -> None:
    files = Files(project, config_dir)
    files.provider.login(ALICE)
    token = files.store.path
    os.chown(token, OTHER_UID, OTHER_UID)
    with pytest.raises(StorageError, match=rf"{token} is owned by another user"):
        Files(project, config_dir).store.load()
    assert sorted(p.name for p in token.parent.glob(".token*")) == [".token", ".token.lock"]
    settings = ProjectLayout(project).settings
    settings.write_text("{}")
    os.chown(settings, OTHER_UID, OTHER_UID)
    with pytest.raises(StorageError, match="owned by another user"):
        load_settings(ProjectLayout(project))


# --- the per-user secret -------------------------------------------------------------


def planted_secret(config_dir: Path, bits: int = 0o600, uid: int = 0) -> Path:
    make_dir(config_dir, 0o700)
    secret = config_dir / "user.secret"
    secret.write_bytes(b"k" * 32)
    os.chown(secret, uid, uid)
    os.chmod(secret, bits)
    return secret


@pytest.mark.parametrize(("bits", "uid", "problem"), [
    (0o600, OTHER_UID, f"is owned by another user (uid {OTHER_UID})"),
    (0o620, 0, "can be written by its group (mode 620)"),
    (0o606, 0, "can be written by every user (mode 606)"),
], ids=["another-user", "group-writable", "other-writable"])
def test_a_secret_someone_else_could_have_chosen_is_refused(
    config_dir: Path, bits: int, uid: int, problem: str
) -> None:
    secret = planted_secret(config_dir, bits, uid)
    with pytest.raises(StorageError) as refused:
        UserSecret(config_dir).value()
    assert f"the per-user secret {secret} {problem}" in str(refused.value)
    assert mode(secret) == bits and secret.read_bytes() == b"k" * 32  # left as it is


@pytest.mark.parametrize(("bits", "uid", "problem"), [
    (0o700, OTHER_UID, "is owned by another user"),
    (0o770, 0, "can be written by its group (mode 770)"),
    (0o777, 0, "can be written by every user (mode 777)"),
], ids=["another-user", "group-writable", "other-writable"])
def test_a_secret_directory_someone_else_controls_is_refused(
    config_dir: Path, bits: int, uid: int, problem: str
) -> None:
    make_dir(config_dir, bits, uid)
    with pytest.raises(StorageError, match=re.escape(problem)):
        UserSecret(config_dir).value()
    assert os.listdir(config_dir) == []  # no secret created there
    assert mode(config_dir) == bits


def test_a_config_home_everyone_can_write_is_refused(tmp_path: Path) -> None:
    config_home = make_dir(tmp_path / ".config", 0o777)  # what umask 000 used to leave
    with pytest.raises(StorageError, match=rf"is in {config_home}, which can be written"):
        UserSecret(config_home / "cidx").value()
    assert os.listdir(config_home) == []


@pytest.mark.usefixtures("umask_000")
def test_under_umask_000_the_secret_and_its_directories_are_private(tmp_path: Path) -> None:
    home = make_dir(tmp_path / "home", 0o755)
    UserSecret(home / ".config" / "cidx").value()
    assert mode(home / ".config") == 0o700
    assert mode(home / ".config" / "cidx") == 0o700
    assert mode(home / ".config" / "cidx" / "user.secret") == 0o600


def test_a_readable_secret_of_ones_own_is_still_tightened_not_refused(
    config_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = planted_secret(config_dir, 0o644)
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"):
        assert UserSecret(config_dir).value() == b"k" * 32
    assert mode(secret) == 0o600 and "had mode 644" in caplog.text


def test_the_read_itself_refuses_a_writable_secret_whatever_was_checked_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"k" * 32)
    os.chmod(path, 0o660)  # as if swapped in after the check: the descriptor is judged
    with pytest.raises(StorageError, match=r"can be written by its group \(mode 660\)"):
        read_private(path, secret=True)
    assert mode(path) == 0o660
    assert read_private(path) is not None and mode(path) == 0o600  # a data file: tightened


def test_a_symlinked_config_directory_of_ones_own_is_followed(tmp_path: Path) -> None:
    real = make_dir(tmp_path / "dotfiles" / "cidx", 0o700)  # as a dotfile manager links it
    (tmp_path / "cidx").symlink_to(real)
    value = UserSecret(tmp_path / "cidx").value()
    assert (real / "user.secret").read_bytes() == value


def test_the_keyring_fallback_refuses_a_planted_secret_too(config_dir: Path) -> None:
    from keyring.backends import fail

    planted_secret(config_dir, 0o600, OTHER_UID)
    with pytest.raises(StorageError, match="owned by another user"):
        KeyringSecret(UserSecret(config_dir), backend=fail.Keyring()).value()


@pytest.mark.parametrize(("where", "bits", "uid", "problem"), [
    ("file", 0o600, OTHER_UID, "is owned by another user"),
    ("file", 0o660, 0, "can be written by its group"),
    ("directory", 0o775, 0, "which can be written by its group"),
    ("directory", 0o755, OTHER_UID, "which is owned by another user"),
], ids=["file-theirs", "file-group-writable", "dir-group-writable", "dir-theirs"])
def test_a_cidx_secret_file_someone_else_could_have_chosen_is_refused(
    tmp_path: Path, where: str, bits: int, uid: int, problem: str
) -> None:
    holder = make_dir(tmp_path / "ci", 0o700)
    path = holder / "fleet.secret"
    path.write_bytes(b"k" * 32)
    os.chmod(path, 0o600)
    target = path if where == "file" else holder
    os.chown(target, uid, uid)
    os.chmod(target, bits)
    with pytest.raises(StorageError, match=problem) as refused:
        FileSecret(path).value()
    assert "CIDX_SECRET_FILE" in str(refused.value)
    assert "unset CIDX_SECRET_FILE" in str(refused.value)


def test_a_cidx_secret_file_in_a_sticky_directory_is_accepted(tmp_path: Path) -> None:
    holder = make_dir(tmp_path / "tmp", 0o1777)  # a CI runner's /tmp
    path = holder / "fleet.secret"
    path.write_bytes(b"k" * 32)
    assert FileSecret(path).value() == b"k" * 32
