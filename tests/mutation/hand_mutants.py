"""Mutants mutmut 3 cannot make: it mutates inside functions only, so module constants,
the breaker's transition table and dataclass defaults are changed here by hand.

Each entry is (file, text as it is, text as the mutant has it, and the tests that judge
it: the unit tests unless it says otherwise). The text must occur exactly once in the
file, so an edit elsewhere that moves it is caught, not skipped.

The adapters' entries are the survivors of an outside audit's hand mutants (issue 25):
flags, statements and bounds that mutmut's operators do not reach.
"""

from __future__ import annotations

from typing import NamedTuple


class HandMutant(NamedTuple):
    path: str
    before: str
    after: str
    tests: tuple[str, ...] = ("tests/unit",)

    @property
    def name(self) -> str:
        return f"{self.path}: {self.before.strip()} -> {self.after.strip()}"


BREAKER = "cidx_auth/domain/breaker.py"
EXPIRY = "cidx_auth/domain/expiry.py"
RETRY = "cidx_auth/domain/retry.py"
RULES = "cidx_auth/domain/rules.py"
TOKEN = "cidx_auth/domain/token.py"
QUERY = "cidx_auth/domain/query.py"
EVENTS = "cidx_auth/domain/events.py"
API = "cidx_auth/service/api_calls.py"
PROVIDER = "cidx_auth/service/provider.py"
RENEWAL = "cidx_auth/service/renewal.py"
FILE_IO = "adapters/file_io.py"
FILE_LOCK = "adapters/file_lock.py"
TOKEN_STORE = "adapters/file_token_store.py"
HTTP_LIMITS = "adapters/http_limits.py"
STORAGE_FILES = "tests/integration/test_storage_files.py"
LOCK_TROUBLE = "tests/integration/test_lock_trouble.py"


def _row(before: str, after: str) -> HandMutant:
    """One row of the breaker table changed."""
    return HandMutant(BREAKER, before, after)


HAND_MUTANTS: tuple[HandMutant, ...] = (
    # The breaker's constants, defaults and every row of its transition table.
    HandMutant(BREAKER, "FAILURE_THRESHOLD = 5\n", "FAILURE_THRESHOLD = 4\n"),
    HandMutant(BREAKER, "FAILURE_THRESHOLD = 5\n", "FAILURE_THRESHOLD = 6\n"),
    HandMutant(BREAKER, "FIRST_OPEN_PERIOD = 30.0\n", "FIRST_OPEN_PERIOD = 31.0\n"),
    HandMutant(BREAKER, "MAX_OPEN_PERIOD = 300.0\n", "MAX_OPEN_PERIOD = 301.0\n"),
    HandMutant(BREAKER, "MAX_RETRY_AFTER = 3600.0\n", "MAX_RETRY_AFTER = 3601.0\n"),
    HandMutant(BREAKER, "PROBE_TIMEOUT = 90.0\n", "PROBE_TIMEOUT = 91.0\n"),
    HandMutant(BREAKER, "circuit: Circuit = Circuit.CLOSED", "circuit: Circuit = Circuit.OPEN"),
    HandMutant(BREAKER, "    failures: int = 0\n", "    failures: int = 1\n"),
    HandMutant(BREAKER, "    open_period: float = FIRST_OPEN_PERIOD\n",
               "    open_period: float = MAX_OPEN_PERIOD\n"),
    _row("(Circuit.CLOSED, Signal.FAILURE): (Circuit.CLOSED, Period.KEEP)",
         "(Circuit.CLOSED, Signal.FAILURE): (Circuit.CLOSED, Period.FIRST)"),
    _row("(Circuit.CLOSED, Signal.TRIP): (Circuit.OPEN, Period.FIRST)",
         "(Circuit.CLOSED, Signal.TRIP): (Circuit.OPEN, Period.KEEP)"),
    _row("(Circuit.CLOSED, Signal.SUCCESS): (Circuit.CLOSED, Period.FIRST)",
         "(Circuit.CLOSED, Signal.SUCCESS): (Circuit.CLOSED, Period.KEEP)"),
    _row("(Circuit.OPEN, Signal.COOLDOWN_OVER): (Circuit.HALF_OPEN, Period.KEEP)",
         "(Circuit.OPEN, Signal.COOLDOWN_OVER): (Circuit.CLOSED, Period.KEEP)"),
    _row("(Circuit.HALF_OPEN, Signal.PROBE): (Circuit.HALF_OPEN, Period.KEEP)",
         "(Circuit.HALF_OPEN, Signal.PROBE): (Circuit.HALF_OPEN, Period.FIRST)"),
    _row("(Circuit.HALF_OPEN, Signal.PROBE_LOST): (Circuit.HALF_OPEN, Period.KEEP)",
         "(Circuit.HALF_OPEN, Signal.PROBE_LOST): (Circuit.OPEN, Period.KEEP)"),
    _row("(Circuit.HALF_OPEN, Signal.SUCCESS): (Circuit.CLOSED, Period.FIRST)",
         "(Circuit.HALF_OPEN, Signal.SUCCESS): (Circuit.CLOSED, Period.KEEP)"),
    _row("(Circuit.HALF_OPEN, Signal.FAILURE): (Circuit.OPEN, Period.DOUBLE)",
         "(Circuit.HALF_OPEN, Signal.FAILURE): (Circuit.OPEN, Period.FIRST)"),
    # Expiry, retry and lock timing.
    HandMutant(EXPIRY, "CLOCK_SKEW = 30.0\n", "CLOCK_SKEW = 31.0\n"),
    HandMutant(EXPIRY, "REFRESH_WINDOW = 300.0\n", "REFRESH_WINDOW = 301.0\n"),
    HandMutant(RETRY, "AUTH_DEADLINE = 30.0\n", "AUTH_DEADLINE = 31.0\n"),
    HandMutant(RETRY, "API_DEADLINE = 60.0\n", "API_DEADLINE = 61.0\n"),
    HandMutant(RETRY, "MAX_SERVER_WAIT = 24 * 3600.0\n", "MAX_SERVER_WAIT = 24 * 3601.0\n"),
    HandMutant(RETRY, "MAX_ATTEMPTS = 3\n", "MAX_ATTEMPTS = 4\n"),
    HandMutant(RETRY, "BACKOFF_BASE = 1.0\n", "BACKOFF_BASE = 2.0\n"),
    HandMutant(RETRY, "BACKOFF_FACTOR = 2.0\n", "BACKOFF_FACTOR = 3.0\n"),
    HandMutant(RETRY, "BACKOFF_MAX = 60.0\n", "BACKOFF_MAX = 61.0\n"),
    HandMutant(RULES, "LOCK_WAIT_MARGIN = 5.0\n", "LOCK_WAIT_MARGIN = 6.0\n"),
    HandMutant(RULES, "LOCK_WAIT_MARGIN = 5.0\n", "LOCK_WAIT_MARGIN = 4.0\n"),
    HandMutant(PROVIDER, "RENEWAL_BACKOFF = 30.0\n", "RENEWAL_BACKOFF = 29.0\n"),
    HandMutant(PROVIDER, "RENEWAL_BACKOFF = 30.0\n", "RENEWAL_BACKOFF = 31.0\n"),
    HandMutant(RENEWAL, "renewal_failed: bool = False", "renewal_failed: bool = True"),
    # What a token may be.
    HandMutant(TOKEN, "MAX_LIFETIME = 24 * 3600.0\n", "MAX_LIFETIME = 24 * 3600.0 - 1\n"),
    HandMutant(TOKEN, "MAX_LIFETIME = 24 * 3600.0\n", "MAX_LIFETIME = 24 * 3600.0 + 1\n"),
    HandMutant(TOKEN, 'frozenset({"RS256"})', 'frozenset({"RS256", "HS256"})'),
    HandMutant(TOKEN, '"HS256", "HS384", "HS512", "EdDSA")', '"HS256", "HS384", "HS512")'),
    HandMutant(TOKEN, "    max_future_iat: float = 30.0\n", "    max_future_iat: float = 31.0\n"),
    HandMutant(TOKEN, "SESSION_FORMAT_VERSION = 1\n", "SESSION_FORMAT_VERSION = 2\n"),
    # The query model's limits.
    HandMutant(QUERY, '("semantic", "fts", "hybrid")', '("semantic", "fts")'),
    HandMutant(QUERY, '("fast", "balanced", "high")', '("fast", "balanced")'),
    HandMutant(QUERY, '("commit_message", "commit_diff")', '("commit_message",)'),
    HandMutant(QUERY, "MAX_QUERY_TEXT = 1000\n", "MAX_QUERY_TEXT = 1001\n"),
    HandMutant(QUERY, "MAX_QUERY_TEXT = 1000\n", "MAX_QUERY_TEXT = 999\n"),
    HandMutant(QUERY, "MAX_REPOSITORY_ALIAS = 255\n", "MAX_REPOSITORY_ALIAS = 256\n"),
    HandMutant(QUERY, '"limit": (1, 100),', '"limit": (1, 101),'),
    HandMutant(QUERY, '"min_score": (0.0, 1.0),', '"min_score": (0.0, 1.5),'),
    HandMutant(QUERY, '"edit_distance": (0, 3),', '"edit_distance": (0, 4),'),
    HandMutant(QUERY, '"snippet_lines": (0, 50),', '"snippet_lines": (0, 51),'),
    HandMutant(QUERY, "DEFAULT_LIMIT = 10\n", "DEFAULT_LIMIT = 11\n"),
    # What the counters count, and which calls may be sent twice.
    HandMutant(EVENTS, '    EventKind.RELOGGED_IN: "relogins",\n', ""),
    HandMutant(EVENTS, '    EventKind.REFRESH_FAILED: "failures",\n', ""),
    HandMutant(API, '{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}',
               '{"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST"}'),
    HandMutant(API, '{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}',
               '{"GET", "HEAD", "OPTIONS", "DELETE"}'),
    # The safety adapters (issue 25): durability, the size cap, the lock's open and its
    # re-check, the cache under the lock, the inflate step and the deadline's watchdog.
    HandMutant(FILE_IO, "        fsync_dir(directory)\n", "", (STORAGE_FILES,)),
    HandMutant(FILE_IO, "        if status.st_size > limit:\n", "        if False:\n",
               (STORAGE_FILES,)),
    HandMutant(FILE_LOCK, 'holders write nothing to it\n    | getattr(os, "O_NOFOLLOW", 0)\n',
               "holders write nothing to it\n", (LOCK_TROUBLE,)),
    HandMutant(FILE_LOCK, "    refuse_unless_ours(path, status)  # whatever we opened",
               "    pass  # whatever we opened", (LOCK_TROUBLE,)),
    HandMutant(TOKEN_STORE, " and self._young(cached) \\\n                and not self._holding:",
               " and self._young(cached):", (STORAGE_FILES,)),
    HandMutant(HTTP_LIMITS, "decompress(pending, min(INFLATE_STEP, self._room + 1))",
               "decompress(pending, self._room + 1)",
               ("tests/integration/test_hostile_server.py",)),
    HandMutant(HTTP_LIMITS, "threading.Timer(max(self.left(), 0.0), self._cut)",
               "threading.Timer(max(self.left(), 0.0) + 20.0, self._cut)",
               ("tests/integration/test_http_deadline.py",)),
)
