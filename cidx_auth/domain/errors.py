"""The errors cidx-auth raises. Every one says what the user can do next.

The tree::

    CidxAuthError
    ├── ConfigurationError (ValueError)     bad setting or argument          exit 2
    │   └── NotApproved                     a project names a server not approved
    ├── TokenRejected (ValueError)          a JWT the rules refuse           exit 3
    │   ├── MalformedToken                  not three base64url JSON parts
    │   ├── DisallowedAlgorithm             alg "none" or not the pinned one  exit 3
    │   └── UnusableLifetime                no exp, lifetime > 24 h, iat in the future
    ├── AuthenticationError                 the server refused who we are     exit 3
    │   ├── InvalidCredentials              login answered 401
    │   ├── AccountLocked                   lockout or login rate limit
    │   ├── MfaRequired                     the account needs a second factor
    │   ├── PasswordExpired                 login answered 403 password_expired
    │   ├── RefreshRejected                 refresh token refused (triggers re-login)
    │   └── NotLoggedIn                     no stored credentials
    │       └── LoggedOut                   neither a session nor credentials stored
    ├── TransportError                      the server could not be used      exit 4
    │   ├── ServerUnavailable               network error, timeout, 5xx
    │   ├── RateLimited                     429 that is not about the account
    │   └── CircuitOpen                     the breaker refuses calls for now
    ├── LockTimeout (TimeoutError)          another process kept renewing     exit 4
    ├── ProtocolError                       the server answered nonsense      exit 4
    └── StorageError (OSError)              local token storage failed        exit 5
        ├── LockUnavailable                 no lock can be taken here at all
        ├── CorruptStore                    a stored file cannot be read back
        └── CredentialsUnreadable           .creds cannot be decrypted

Messages never contain a password, token or key: callers may print them.
"""

from __future__ import annotations


class CidxAuthError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code = 1


class ConfigurationError(CidxAuthError, ValueError):
    """A setting or argument is wrong."""

    exit_code = 2


class NotApproved(ConfigurationError):
    """A CIDX client's project names a server and user the user has not approved (a
    cloned repository could name any): nothing is read, written or sent."""


class TokenRejected(CidxAuthError, ValueError):
    """The server handed us a token that our rules do not accept: exit 3, as any token
    the client refuses to use (a server, not a bug, caused it)."""

    exit_code = 3


class MalformedToken(TokenRejected):
    """Not a JWT: three base64url parts with JSON header and claims."""


class DisallowedAlgorithm(TokenRejected):
    """The JWT header names an algorithm the project's pin does not allow (or "none").

    ``login --allow-alg`` turns it into a usage error (exit 2), since there the user
    named the algorithm."""


class UnusableLifetime(TokenRejected):
    """The token has no usable expiry, lives too long, or was issued in the future."""


class AuthenticationError(CidxAuthError):
    """The server refused to authenticate us; retrying will not help."""

    exit_code = 3


class InvalidCredentials(AuthenticationError):
    """The server refused the stored username and password."""


class AccountLocked(AuthenticationError):
    """Too many attempts: the server refuses logins until ``retry_at``."""

    def __init__(self, message: str, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class MfaRequired(AuthenticationError):
    """The account needs a second factor, which a non-interactive client cannot give."""


class PasswordExpired(AuthenticationError):
    """The server says the password has expired."""


class RefreshRejected(AuthenticationError):
    """The refresh token was refused (expired, revoked or replayed)."""


class NotLoggedIn(AuthenticationError):
    """No credentials are stored for this project."""


class LoggedOut(NotLoggedIn):
    """Nothing stored for this project, no session and no credentials (``logout``, here or
    in another process): a token still held in memory is not used any longer."""


class TransportError(CidxAuthError):
    """The server could not be reached or did not answer usefully."""

    exit_code = 4

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerUnavailable(TransportError):
    """A network error, a timeout or a 5xx answer: counts against the breaker.

    ``reached`` is False only when the request certainly never got to the server
    (connection refused, pool timeout): then even a refresh may be sent again.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, *, reached: bool = True
    ) -> None:
        super().__init__(message, retry_after)
        self.reached = reached


class RateLimited(TransportError):
    """The server answered 429; ``retry_after`` says how long it wants us to wait."""


RESET_BREAKER = "cidx-auth login"
"""The command that closes the circuit at once: every ``login`` resets the breaker."""


class CircuitOpen(TransportError):
    """The breaker is open: no call goes out until ``retry_at``.

    The message says whose decision it is (this machine's breaker, not the server), after
    how many ``failures`` in a row, when the next attempt (the probe) may go, or that
    another command's probe is out (``probe_out``: the breaker is half-open), and the
    command that resets it now.
    """

    def __init__(self, retry_at: float, now: float | None = None, *, failures: int = 0,
                 probe_out: bool = False) -> None:
        from cidx_auth.domain.moments import local_text  # datetime: only when it is shown

        when = local_text(retry_at, now)  # with the date unless it is ``now``'s day
        after = f" after {failures} failed call{'' if failures == 1 else 's'} in a row" \
            if failures > 0 else ""
        wait = (f"another command is probing the server now; next attempt after {when} at "
                "the latest") if probe_out else \
            f"next attempt after {when}, when the first command probes the server"
        super().__init__(f"server unavailable: this machine's circuit breaker stopped the "
                         f"call (nothing was sent){after}; {wait}; to try now, run "
                         f"`{RESET_BREAKER}` (it resets the breaker)")
        self.retry_at = retry_at
        self.failures = failures


class ProtocolError(CidxAuthError):
    """The server's answer does not follow the CIDX contract: exit 4, since a server
    that answers what the client cannot use cannot be used now (decisions.md)."""

    exit_code = 4


class StorageError(CidxAuthError, OSError):
    """Local storage of tokens, credentials or state failed."""

    exit_code = 5


class LockTimeout(CidxAuthError, TimeoutError):
    """Another process held a lock for longer than the wait allowed.

    Not a storage fault: the holder is renewing (its network deadlines bound how long),
    so the user is told the server is slow to answer, and to try again.
    """

    exit_code = 4
    remedy: str = ""
    """What the user can do about the holder, when the lock can name it (the ``O_EXCL``
    marker it left: which file, and how to remove it); empty otherwise."""


class LockUnavailable(StorageError):
    """No lock can be taken here at all (a read-only or immutable lock file, a mount
    without ``flock`` or ``O_EXCL``). The core then goes on without the lock, by the
    ownership rule: it never sends the stored refresh token, it logs in instead."""


class CorruptStore(StorageError):
    """A stored file exists but cannot be read back (damaged, foreign or tampered)."""


class CredentialsUnreadable(StorageError):
    """The stored credentials cannot be decrypted or parsed."""
