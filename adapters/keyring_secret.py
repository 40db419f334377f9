"""The per-user secret in the OS keyring, with the file as the fallback (errata #14).

``CIDX_SECRET_BACKEND`` picks where the secret lives:

* ``file`` (the default, so nothing changes for existing users): ``user.secret`` in
  the configuration directory (:class:`adapters.user_secret.UserSecret`);
* ``keyring``: the OS keyring (macOS Keychain, Windows Credential Locker, Secret
  Service), as base64 under service ``cidx-auth``, username ``user-secret``.

``CIDX_SECRET_FILE`` wins over both: a fleet hands every host the same secret that way.
:func:`adapters.secret_sources.secret_source` makes the choice.

With ``keyring``, the first use copies an existing ``user.secret`` into the keyring,
so switching backends keeps every stored token and password readable; with no file,
a new secret is made, written and read back (two processes making the first secret
at the same instant could still disagree: the later write wins and the earlier
process's first token will not open again; it logs in once more).

Without the keyring package (the ``keyring`` extra), choosing ``keyring`` is a usage
error (exit 2, :mod:`adapters.extras`): the secret is not put in the file in silence.
When no usable backend exists (keyring's ``fail`` or ``null`` backend: a headless
machine with no Secret Service) or the backend fails, the file is used, with one
WARNING. A keyring that works only some of the time therefore splits the user into
two secrets; pick ``file`` on such a machine. ``keyring`` is imported on first use:
it is slow to import, and only users who chose it pay.
"""

from __future__ import annotations

import base64
from typing import Any

from adapters.cached_secret import SECRET_SIZE, CachedSecret, decode_secret
from adapters.file_io import refuse_if_read_only, warn
from adapters.user_secret import UserSecret
from cidx_auth.domain.errors import StorageError

SERVICE = "cidx-auth"
ACCOUNT = "user-secret"


class KeyringSecret(CachedSecret):
    """The secret in the OS keyring, or else in the file; the same ``value()`` as
    :class:`UserSecret`."""

    def __init__(self, fallback: UserSecret, backend: Any = None) -> None:
        super().__init__()
        self.fallback = fallback
        self._backend = backend
        """A keyring backend to use instead of keyring's choice (tests pass one)."""

    def _read(self) -> bytes:
        try:
            backend, missing = self._keyring()
            if backend is None:
                warn("%s; the per-user secret stays in %s", missing, self.fallback.path)
                return self.fallback.value()
            return self._get_or_create(backend)
        except StorageError:
            raise
        except Exception as error:  # any backend (D-Bus, Keychain, Windows) has its own errors
            warn("the OS keyring failed (%s); using the per-user secret in %s instead",
                 type(error).__name__, self.fallback.path)
            return self.fallback.value()

    def _keyring(self) -> tuple[Any, str]:
        """The backend to use, or None and why there is none."""
        if self._backend is None:
            try:
                import keyring
            except ImportError:  # secret_source refuses this first (exit 2): a fallback
                from adapters.extras import install_command

                return None, f"the keyring package is missing ({install_command('keyring')})"
            self._backend = keyring.get_keyring()
        # keyring's fail and null backends have priority 0 and -1: they store nothing.
        if self._backend.priority > 0:
            return self._backend, ""
        return None, "no usable OS keyring here"

    def _get_or_create(self, backend: Any) -> bytes:
        stored = backend.get_password(SERVICE, ACCOUNT)
        if stored is None:
            refuse_if_read_only(f"the OS keyring ({SERVICE!r}, {ACCOUNT!r})")
            initial = self._adopt_file()
            backend.set_password(SERVICE, ACCOUNT, base64.b64encode(initial).decode("ascii"))
            stored = backend.get_password(SERVICE, ACCOUNT)  # another process may have won
        if not isinstance(stored, str):
            raise StorageError("the OS keyring did not keep the cidx-auth secret; "
                               "set CIDX_SECRET_BACKEND=file")
        damaged = StorageError(
            f"the cidx-auth secret in the OS keyring (service {SERVICE!r}, "
            f"user {ACCOUNT!r}) is damaged; remove it and run "
            "`cidx-auth login --server URL --username NAME` again"
        )
        return decode_secret(stored.encode("ascii", "replace"), damaged)

    def _adopt_file(self) -> bytes:
        """The existing file secret if there is one (no re-login needed), else a new one."""
        if self.fallback.path.exists():
            return self.fallback.value()
        import secrets

        return secrets.token_bytes(SECRET_SIZE)

