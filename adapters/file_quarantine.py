"""Setting a damaged file aside instead of deleting it, and never one that changed (errata #7).

A file that cannot be read back is renamed ``<name>.corrupt-<UTC time>-<n>`` beside
itself, so a user (or a bug report) can still look at it; only the newest
:data:`QUARANTINE_KEEP` are kept. The rename happens only if the file is still the
one that was read, which the caller makes a proof by holding the lock every writer
takes. A set-aside token may still decrypt to a refresh token, so logging out removes
them all (:func:`remove_set_aside`).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from adapters.file_io import Identity, refuse_if_read_only, stat_identity, storage_error

QUARANTINE_KEEP = 3


def quarantine(path: Path, seen: Identity, now: float, keep: int = QUARANTINE_KEEP) -> bool:
    """Move ``path`` to ``<name>.corrupt-<UTC time>`` if it is still the file ``seen``.

    The caller must hold the lock every writer of ``path`` takes (errata #7): the
    identity check then proves no writer replaced the file since it was read. Only the
    ``keep`` newest set-aside files are kept. Returns whether the file was moved.
    """
    if stat_identity(path) != seen:
        return False
    refuse_if_read_only(path)
    prefix = f"{path.name}.corrupt-"
    try:
        aside = sorted(name for name in os.listdir(path.parent) if name.startswith(prefix))
    except OSError as error:
        raise storage_error("list", path.parent, error) from error
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    # A sequence number keeps names unique and in order when the clock has not moved.
    sequence = _next_sequence([name for name in aside if name.startswith(prefix + stamp)])
    while os.path.lexists(target := path.with_name(f"{prefix}{stamp}-{sequence:04d}")):
        sequence += 1
    try:
        os.rename(path, target)  # renames a symlink itself, never its target
    except OSError as error:
        raise storage_error("move aside", path, error) from error
    for name in [*aside, target.name][: max(len(aside) + 1 - keep, 0)]:
        with contextlib.suppress(OSError):  # pruning is housekeeping: it must not fail a load
            os.unlink(path.parent / name)
    return True


def remove_set_aside(path: Path) -> list[Path]:
    """Remove every ``<name>.corrupt-*`` beside ``path`` (a link itself, never its target);
    returns what was removed. :class:`StorageError` names a copy that could not go."""
    prefix = f"{path.name}.corrupt-"
    try:
        names = sorted(name for name in os.listdir(path.parent) if name.startswith(prefix))
    except FileNotFoundError:
        return []
    except OSError as error:
        raise storage_error("list", path.parent, error) from error
    removed = []
    for name in names:
        aside = path.parent / name
        try:
            os.unlink(aside)
        except FileNotFoundError:
            continue  # another logout got there first
        except OSError as error:
            raise storage_error("remove the set-aside copy", aside, error) from error
        removed.append(aside)
    return removed


def _next_sequence(same_stamp: list[str]) -> int:
    if not same_stamp:
        return 0
    try:
        return int(same_stamp[-1].rsplit("-", 1)[1]) + 1
    except ValueError:  # a name we did not write: the existence check below still holds
        return len(same_stamp)
