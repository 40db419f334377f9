"""Interleavings: several processes, each with threads and asyncio tasks, on one store
and one server, with random expiries, faults, crashes and restarts (hypothesis).

Threads are real, so hypothesis chooses the steps, not the thread schedule: a failing
ordering may not shrink or replay exactly. What it buys is many orderings of many steps.

Invariants, checked after every step:
- the server never sees a refresh token twice (its fake revokes the family if it does);
- every caller gets a token valid at the moment it returns, or a clear project error;
- when nothing fails, a crowd that finds everything expired makes at most one auth call.
"""

from __future__ import annotations

import asyncio
import threading

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cidx_auth.domain.errors import (
    CidxAuthError,
    LockUnavailable,
    RefreshRejected,
    ServerUnavailable,
)
from cidx_auth.domain.token import TokenRules, parse_access_token
from cidx_auth.service.provider import TokenProvider
from tests.unit.test_crash_points import Crash, Plan, Process, World, start

PROCESSES = 3
STEPS: list[int] = []


class SharedSession(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world: World = start("expired")
        self.processes: list[tuple[TokenProvider, Process]] = [
            self.world.process(Plan()) for _ in range(PROCESSES)
        ]
        self.problems: list[str] = []
        self.faulty = False
        """A fault or crash happened since the last quiet crowd: calls may be more."""
        self.strict = False
        """In a quiet crowd an error is a failure too, not just a wrong token."""
        STEPS.append(0)

    # ---- what happens to the world ----------------------------------------------------

    @rule(seconds=st.sampled_from([1.0, 100.0, 299.0, 301.0, 450.0, 601.0, 900.0]))
    def time_passes(self, seconds: float) -> None:
        self.world.clock.advance(seconds)

    @rule(kind=st.sampled_from(["5xx", "refused", "unsent", "lost"]))
    def server_trouble(self, kind: str) -> None:
        self.faulty = True
        server = self.world.server
        if kind == "lost":
            server.lose_answers = 1
        elif kind == "5xx":
            server.fail_next(ServerUnavailable("502 Bad Gateway"))
        elif kind == "unsent":
            server.fail_next(ServerUnavailable("connection refused", reached=False))
        else:
            server.fail_next(RefreshRejected("Invalid refresh token"))

    @rule(broken=st.booleans())
    def storage(self, broken: bool) -> None:
        from cidx_auth.domain.errors import StorageError

        self.faulty = self.faulty or broken
        self.world.store.failure = StorageError("read-only file system") if broken else None

    @rule(broken=st.booleans())
    def lock_file(self, broken: bool) -> None:
        """The lock alone cannot be had (an immutable lock file, NFS without lockd)."""
        self.faulty = self.faulty or broken
        self.world.store.lock_failure = LockUnavailable("ENOLCK") if broken else None

    @rule(which=st.integers(0, PROCESSES - 1), at=st.integers(1, 12),
          reached=st.booleans())
    def crash_during_next_call(self, which: int, at: int, reached: bool) -> None:
        """Process ``which`` is replaced by one that vanishes at its ``at``-th port call."""
        self.faulty = True
        provider, process = self.world.process(Plan(crash_at=at, crash_reached=reached))
        self.processes[which] = (provider, process)
        self._call(provider)
        self.processes[which] = self.world.process(Plan())  # restarted, memory empty

    @rule(which=st.integers(0, PROCESSES - 1))
    def restart(self, which: int) -> None:
        self.processes[which] = self.world.process(Plan())

    @rule(which=st.integers(0, PROCESSES - 1))
    def api_says_401(self, which: int) -> None:
        provider = self.processes[which][0]
        session = provider.session
        if session is not None:
            provider.invalidate(session.token.raw)

    # ---- callers ----------------------------------------------------------------------

    @rule(threads=st.integers(1, 4), tasks=st.integers(0, 4))
    def everyone_calls(self, threads: int, tasks: int) -> None:
        self._crowd(threads, tasks)

    @precondition(lambda self: not self.faulty)
    @rule()
    def a_quiet_crowd_after_expiry(self) -> None:
        """With nothing failing, every caller gets a token, for one auth call in all."""
        self.world.clock.advance(601)  # every token anywhere has expired
        before = self.world.server.calls
        self.strict = True
        self._crowd(3, 3)
        self.strict = False
        after = self.world.server.calls
        if after - before > 1:
            self.problems.append(f"a quiet crowd made {after - before} auth calls")

    @rule()
    def quiet_again(self) -> None:
        """Faults are over: let the next crowd show the one-call rule again."""
        self.world.store.failure = self.world.store.lock_failure = None
        self.world.server.clear_faults()
        self.world.clock.advance(601)
        self._crowd(1, 0)  # whatever the faults left behind is renewed once
        self.faulty = False

    # ---- checks -----------------------------------------------------------------------

    @invariant()
    def never_a_replay(self) -> None:
        STEPS[-1] += 1
        assert self.world.server.replays == 0

    @invariant()
    def every_caller_got_a_valid_token_or_a_clear_error(self) -> None:
        assert not self.problems, self.problems

    def _crowd(self, threads: int, tasks: int) -> None:
        workers = [
            threading.Thread(target=self._calls, args=(provider, threads, tasks))
            for provider, _ in self.processes
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            if worker.is_alive():
                self.problems.append("a process's callers were still blocked after 60 s")

    def _calls(self, provider: TokenProvider, threads: int, tasks: int) -> None:
        callers = [threading.Thread(target=self._call, args=(provider,)) for _ in range(threads)]
        for caller in callers:
            caller.start()

        async def many() -> None:
            await asyncio.gather(*(self._acall(provider) for _ in range(tasks)))

        asyncio.run(many())
        for caller in callers:
            caller.join(60)
            if caller.is_alive():
                self.problems.append("a caller was still blocked after 60 s")

    def _call(self, provider: TokenProvider) -> None:
        try:
            self._check(provider.get_token())
        except (CidxAuthError, Crash) as error:
            self._failed(error)
        except BaseException as error:
            self.problems.append(f"{type(error).__name__}: {error}")

    async def _acall(self, provider: TokenProvider) -> None:
        try:
            self._check(await provider.aget_token())
        except (CidxAuthError, Crash) as error:
            self._failed(error)
        except BaseException as error:
            self.problems.append(f"{type(error).__name__}: {error}")

    def _failed(self, error: BaseException) -> None:
        if self.strict:
            self.problems.append(f"a quiet crowd's caller failed: {type(error).__name__}")

    def _check(self, raw: str) -> None:
        token = parse_access_token(raw, TokenRules(), self.world.clock.now())
        if token.exp <= self.world.clock.now():
            self.problems.append("a caller was handed an expired token")


def test_shared_session_interleavings() -> None:
    run_state_machine_as_test(
        SharedSession,
        settings=settings(max_examples=40, stateful_step_count=25, deadline=None,
                          derandomize=True),
    )
    assert sum(STEPS) > 200  # the figure for the closing note: steps checked
