"""Core figures: the warm fast path, and 50 threads + 200 tasks acquiring at once.

Run with ``make bench``. Ratios compare against a baseline measured in the same run,
because these machines are shared and absolute times wander.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.memory import memory_ports
from adapters.system_clock import SystemClock
from cidx_auth.app.container import Container

ROUNDS = 31
CALLS = 100_000


def per_call_ns(fn: object, calls: int = CALLS) -> float:
    call = fn  # a local name keeps the loop identical for both functions
    start = time.perf_counter_ns()
    for _ in range(calls):
        call()  # type: ignore[operator]
    return (time.perf_counter_ns() - start) / calls


def warm_fast_path() -> None:
    ports = memory_ports()
    container = Container(**ports.wiring())
    ports.clock.advance(time.time() - ports.clock.now())  # tokens issued for now
    container.clock.override(SystemClock())  # the real clock: what users pay for
    provider = container.token_provider()
    provider.get_token()
    base, warm = [], []
    for _ in range(ROUNDS):  # interleaved, so drift hits both alike
        base.append(per_call_ns(time.time))
        warm.append(per_call_ns(provider.get_token))
    b, w = statistics.median(base), statistics.median(warm)
    print(f"warm get_token(): median {w:.0f} ns; time.time(): {b:.0f} ns; ratio {w / b:.2f}x"
          " (goal <= 10x)")


def stampede() -> None:
    ports = memory_ports()
    clock, gateway = ports.clock, ports.gateway
    provider = Container(**ports.wiring()).token_provider()
    provider.get_token()
    clock.advance(600)
    calls_before = gateway.calls
    gateway.gate = threading.Event()
    ready = threading.Barrier(51)
    results: list[str] = []

    def worker() -> None:
        ready.wait()
        results.append(provider.get_token())

    async def tasks() -> None:
        results.extend(await asyncio.gather(*(provider.aget_token() for _ in range(200))))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    threads.append(threading.Thread(target=asyncio.run, args=(tasks(),)))
    start = time.perf_counter()
    for t in threads:
        t.start()
    ready.wait()
    gateway.gate.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    print(f"50 threads + 200 tasks, expired token: {gateway.calls - calls_before} gateway "
          f"call(s) (goal 1), {len(set(results))} distinct token(s) among {len(results)}, "
          f"wall {wall * 1000:.1f} ms")


def main() -> None:
    print("== core ==")
    warm_fast_path()
    stampede()


if __name__ == "__main__":
    main()
