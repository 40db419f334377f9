"""The only place the real clock is read."""

from __future__ import annotations

import asyncio
import time


class SystemClock:
    """Wall-clock time and real waiting."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
