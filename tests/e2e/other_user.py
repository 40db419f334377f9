"""This Python, for another user: a copy of the running interpreter and of the project's
installation that any uid can start, for tests that run the CLI as a second user
(through ``setpriv``).

Why a copy: pyenv keeps its interpreters under ``/root/.pyenv``, and ``/root`` is 0700,
so as uid 2002 the loader cannot open ``libpython3.X.so`` (3.12 and 3.13 do not start)
nor the standard library; a clone in a private directory puts the venv out of
reach too. On 3.11 the original did start, but only because the loader fell back to
Debian's ``libpython3.11`` (3.11.2, with Debian's standard library): not the interpreter
under test. The copy is the interpreter under test, for every user.

What is copied (3,000 to 5,000 files, hard links where that is safe: :func:`place`):
``bin/python3.X``, ``lib/libpython3.X.so.1.0``, the standard library with
``lib-dynload``, each at its place below the prefix, without the test suite, the static
library (``config-*``) or the base ``site-packages``; and in the copy's ``site-packages``
what ``pip install 'cidx-auth[server,redis,keyring]'`` installs (every extra a command
may use), as this venv holds it, with the project's packages in place of an editable
install's hooks (they point into the checkout). Byte code only for this interpreter.

Safe on a shared machine: all is made inside a fresh :func:`tempfile.mkdtemp` directory
(ours, 0700: nobody else can add to it), every directory 0755 whatever the umask, opened
to other users once complete, and removed afterwards."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from importlib.util import cache_from_source
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

_TAG = f".{sys.implementation.cache_tag}.pyc"  # byte code of this interpreter, not -O
_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class Copy:
    """A copy of this interpreter, its standard library and the project's installation."""

    prefix: Path

    @property
    def executable(self) -> Path:
        return self.prefix / "bin" / f"python{_VERSION}"

    @property
    def env(self) -> dict[str, str]:
        """What a process of the copy needs: its own ``libpython`` first (the binary's
        RUNPATH names the original's directory, which the other user cannot search)."""
        return {"LD_LIBRARY_PATH": str(self.prefix / "lib")}

    def as_user(self, uid: int) -> list[str]:
        """The start of a command that runs the copy as ``uid``, without root's groups."""
        return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                str(self.executable)]


class Unsupported(Exception):
    """This interpreter's files are not laid out as a copy can reproduce (a skip)."""


def place(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` where that is safe (a file of ours that
    only we can write, not set-user-ID: nobody can change it through the link) and
    possible (the same file system); otherwise a copy, readable by all, writable by us."""
    status = os.stat(source)
    _directories(target.parent)
    if status.st_uid == os.geteuid() and not status.st_mode & (
        stat.S_ISUID | stat.S_ISGID | stat.S_IWGRP | stat.S_IWOTH
    ):
        try:
            os.link(source, target)
            return
        except OSError:  # another file system (EXDEV), or links refused: copy
            pass
    with open(source, "rb") as reading, open(
        target, "xb", opener=lambda path, flags: os.open(path, flags, 0o600)
    ) as writing:
        shutil.copyfileobj(reading, writing)
    os.chmod(target, 0o755 if status.st_mode & 0o111 else 0o644)
    os.utime(target, ns=(status.st_atime_ns, status.st_mtime_ns))  # keeps byte code valid


def _directories(path: Path) -> None:
    """``path`` and its missing parents, each 0755: not the umask's choice (under umask
    000, ``mkdir`` would make them writable by every user)."""
    if not path.exists():
        _directories(path.parent)
        os.mkdir(path, 0o700)
        os.chmod(path, 0o755)  # noqa: S103  (read by the other user; written by us alone)


def _tree(source: Path, target: Path, keep: Callable[[Path], bool]) -> None:
    """Copy the files under ``source`` whose relative path ``keep`` accepts."""
    for parent, directories, files in os.walk(source):
        relative = Path(parent).relative_to(source)
        directories[:] = [name for name in directories if keep(relative / name)]
        for name in files:
            if keep(relative / name):
                place(Path(parent) / name, target / relative / name)


def _keep_code(relative: Path) -> bool:
    """Not the byte code of other interpreters or of ``-O`` (a third of the files)."""
    return relative.parent.name != "__pycache__" or relative.name.endswith(_TAG)


def _keep_stdlib(relative: Path) -> bool:
    # Not the test suite (half the size), the static library or the base site-packages.
    top = relative.parts[0]
    return top not in ("test", "site-packages") and not top.startswith("config-") and (
        _keep_code(relative))


def distributions(name: str, extras: Iterable[str]) -> list[metadata.Distribution]:
    """``name`` and every distribution it requires with ``extras``, transitively, as
    installed here: what ``pip install 'name[extras]'`` puts in a user's environment."""
    found: dict[str, tuple[metadata.Distribution, set[str]]] = {}
    wanted = [(name, set(extras))]
    while wanted:
        name, extras = wanted.pop()
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise Unsupported(f"{name} is not installed") from None
        key = canonicalize_name(distribution.metadata["Name"])
        known = found.get(key, (distribution, set()))[1]
        if key in found and extras <= known:
            continue
        found[key] = (distribution, extras | known)
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in extras or {""}
            ):
                wanted.append((requirement.name, set(requirement.extras)))
    return [distribution for distribution, _ in found.values()]


def _installed_files(distribution: metadata.Distribution, site: Path) -> Iterator[Path]:
    """The files ``distribution`` installed in ``site`` (its RECORD), each ``.py`` with
    its byte code for this interpreter; not its scripts nor an editable install's hooks."""
    if distribution.files is None:
        raise Unsupported(f"{distribution.metadata['Name']} has no list of its files")
    for entry in distribution.files:
        path = Path(os.path.normpath(site / entry))
        if not path.is_relative_to(site) or path.name.startswith("__editable__"):
            continue
        if path.suffix != ".pyc" and path.is_file():
            yield path
        if path.suffix == ".py" and Path(cache_from_source(path)).is_file():
            yield Path(cache_from_source(path))


def _below(path: Path, prefix: Path) -> Path:
    try:
        return path.relative_to(prefix)
    except ValueError:
        raise Unsupported(f"{path} is not below the prefix {prefix}") from None


def _fill(copy: Path, project: str, extras: Iterable[str], packages: Iterable[Path]) -> None:
    base = Path(sys.base_prefix)
    stdlib = Path(sysconfig.get_path("stdlib"))
    _tree(stdlib, copy / _below(stdlib, base), _keep_stdlib)
    dynload = Path(sysconfig.get_config_var("DESTSHARED") or stdlib / "lib-dynload")
    if not dynload.is_relative_to(stdlib):
        _tree(dynload, copy / _below(dynload, base), _keep_code)
    executable = getattr(sys, "_base_executable", sys.executable)  # the venv's base
    place(Path(os.path.realpath(executable)), copy / "bin" / f"python{_VERSION}")
    library = Path(str(sysconfig.get_config_var("LIBDIR")),
                   str(sysconfig.get_config_var("INSTSONAME")))
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and library.is_file():
        place(library, copy / "lib" / library.name)
    site = copy / _below(stdlib, base) / "site-packages"
    for distribution in distributions(project, extras):
        installed_in = Path(str(distribution.locate_file(""))).resolve()
        for path in _installed_files(distribution, installed_in):
            place(path, site / path.relative_to(installed_in))
    for package in packages:
        if not (site / package.name).exists():  # not there already: an editable install
            _tree(package, site / package.name, _keep_code)


@contextmanager
def python_for_other_users(
    project: str, extras: Iterable[str], packages: Iterable[Path]
) -> Iterator[Copy]:
    """A :class:`Copy` of this interpreter with distribution ``project`` and its
    requirements with ``extras``, its editable install replaced by ``packages`` (their
    directories), readable by every user until the block ends. Raises
    :class:`Unsupported` when this interpreter's layout cannot be copied."""
    if not sys.platform.startswith("linux"):
        raise Unsupported(f"copies are made for Linux only, not {sys.platform}")
    prefix = Path(tempfile.mkdtemp(prefix="cidx-python-", dir="/tmp"))
    try:
        _fill(prefix, project, extras, packages)
        os.chmod(prefix, 0o755)  # noqa: S103  (complete: open it to the other users)
        yield Copy(prefix)
    finally:
        shutil.rmtree(prefix)


def can_run_programs(directory: Path) -> bool:
    """Whether programs can run from ``directory`` (its file system is not ``noexec``)."""
    return not os.statvfs(directory).f_flag & os.ST_NOEXEC
