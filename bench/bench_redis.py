"""Redis figures: a fleet of 40 processes on 4 hosts, and a warm token read.

Run with ``python bench/bench_redis.py`` (or ``make bench``). It starts its own
``redis-server`` on a free loopback port and stops it at the end.

1. Fleet: 4 hosts (own checkout, own config directory, one shared secret) x 10
   processes start together with an expired token in Redis. Reported: auth calls
   (the goal is 1), wall time from the first request to the last answer, and how
   long each process waited for the distributed lock (median, max).
2. Warm read: one stored session read again and again, with every cache off:
   ``RedisTokenStore.load`` (GET over loopback, decrypt) against
   ``FileTokenStore.load`` (open, read, decrypt), interleaved in one run because
   these machines are shared and absolute times wander.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.fernet_cipher import FernetCipher
from adapters.file_token_store import FileTokenStore
from adapters.redis_connection import connect
from adapters.redis_token_store import RedisTokenStore, identity_key
from cidx_auth.domain.rules import Rules
from tests.integration.redis_support import (
    RedisServer,
    run_together,
    seed_fleet,
)
from tests.integration.storage_helpers import (
    SERVER_URL,
    known_sessions,
)

HOSTS, PER_HOST = 4, 10
READS, ROUNDS = 400, 5


def fleet(root: Path, url: str) -> None:
    hosts, auth = seed_fleet(root, url, HOSTS)
    commands = [
        ["race", url, str(host.project), str(host.config), str(auth.state_path), "30",
         str(root / "ready"), str(root / "go")]
        for host in hosts for _ in range(PER_HOST)
    ]
    reports = run_together(commands, root / "ready", root / "go")
    stats = auth.stats()
    calls = stats["logins"] + stats["refreshes"]
    wall = max(r["done"] for r in reports) - min(r["started"] for r in reports)
    waits = [wait * 1000 for r in reports for wait in r["waits"]]
    tokens = len({r["token"] for r in reports})
    print(f"fleet: {HOSTS} hosts x {PER_HOST} processes, expired token in Redis")
    print(f"  auth calls         {calls} (goal 1; replays {stats['replays']}), "
          f"distinct tokens {tokens}")
    print(f"  wall time          {wall * 1000:.0f} ms (first request to last answer)")
    print(f"  lock wait          median {statistics.median(waits):.0f} ms, "
          f"max {max(waits):.0f} ms over {len(waits)} acquisitions")


def warm_reads(root: Path, url: str) -> None:
    cipher = FernetCipher(lambda: b"k" * 32)
    session = known_sessions()[0]
    shared = RedisTokenStore(connect(url), identity_key(SERVER_URL, "alice"), cipher,
                             local_cache_ttl=0.0, rules=Rules())
    files = FileTokenStore(root / ".token", root / ".token.lock", cipher, cache_ttl=0.0)
    with shared.lock(5):
        shared.save(session)
    with files.lock(5):
        files.save(session)
    series: dict[str, list[float]] = {"redis": [], "file": []}
    for _ in range(ROUNDS):
        for name, store in (("redis", shared), ("file", files)):
            for _ in range(READS):
                started = time.perf_counter()
                assert store.load() == session
                series[name].append((time.perf_counter() - started) * 1e6)
    redis_us = statistics.median(series["redis"])
    file_us = statistics.median(series["file"])
    print(f"warm read, no cache ({ROUNDS} x {READS} each, interleaved)")
    print(f"  RedisTokenStore.load   median {redis_us:7.1f} us")
    print(f"  FileTokenStore.load    median {file_us:7.1f} us")
    print(f"  ratio redis / file     {redis_us / file_us:.2f}")


def main() -> int:
    binary = shutil.which("redis-server")
    if binary is None:
        print("bench_redis: redis-server is not on PATH (make redis); skipped")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as temp, \
            RedisServer(binary) as server:
        root = Path(temp)
        fleet(root / "fleet", server.url)
        (root / "reads").mkdir(mode=0o700)
        warm_reads(root / "reads", server.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
