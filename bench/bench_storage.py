"""Storage figures: loading the stored token in a fresh process, and 50 processes at once.

Run with ``python bench/bench_storage.py`` (or ``make bench``). A fresh process is what
every ``cidx-auth`` call is, so its start-up is measured against the floor any Fernet
user pays, ``python -c "import cryptography.fernet"``, in the same run, interleaved,
because these machines are shared and absolute times wander. A third series, the floor
plus the core's ``cidx_auth.domain.token``, shows how much of the gap is the core's.

Installed packages run from cached bytecode (pip compiles them), so the main figure
lets the children cache ours too, under a temporary ``PYTHONPYCACHEPREFIX`` (the source
tree stays clean). With ``PYTHONDONTWRITEBYTECODE`` set, as in some CI sandboxes, every
run compiles our modules from source: that figure is printed as well.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cidx_auth.app.container import build_project
from tests.integration.storage_helpers import (
    ALICE,
    SERVER_URL,
    CountingServer,
    known_sessions,
    session_of,
    start_together,
    token_store,
)

RUNS = 15
PROCESSES = 50

LOAD = """
import sys
from pathlib import Path
from adapters.fernet_cipher import project_cipher
from adapters.file_token_store import FileTokenStore
from adapters.user_secret import UserSecret
project, config = Path(sys.argv[1]), Path(sys.argv[2])
directory = project / ".code-indexer"
cipher = project_cipher(project, sys.argv[3], UserSecret(config))
store = FileTokenStore(directory / ".token", directory / ".token.lock", cipher)
assert store.load() is not None
"""


def fresh_process_ms(env: dict[str, str], code: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, env=env)
    return (time.perf_counter() - start) * 1000


def fresh_load(root: Path, env: dict[str, str], label: str) -> None:
    project, config = root / f"project-{label}", root / f"config-{label}"
    project.mkdir()
    store = token_store(project, config)
    with store.lock(5):
        store.save(known_sessions()[0])
    load_args = (LOAD, str(project), str(config), SERVER_URL)
    fresh_process_ms(env, *load_args)  # fills the bytecode cache, when there is one
    series: dict[str, list[float]] = {"floor": [], "floor+domain": [], "load": []}
    for _ in range(RUNS):  # interleaved, so drift hits every series alike
        series["floor"].append(fresh_process_ms(env, "import cryptography.fernet"))
        series["floor+domain"].append(
            fresh_process_ms(env, "import cryptography.fernet, cidx_auth.domain.token")
        )
        series["load"].append(fresh_process_ms(env, *load_args))
    floor, domain, load = (statistics.median(series[name]) for name in series)
    print(
        f"{label}: fresh process loading the stored token: median {load:.1f} ms; "
        f'python -c "import cryptography.fernet": {floor:.1f} ms; '
        f"ratio {load / floor:.2f}x (goal <= 1.5x)"
    )
    print(
        f"  floor + the core's cidx_auth.domain.token: {domain:.1f} ms "
        f"({domain / floor:.2f}x); the storage adapters and the load add {load - domain:.1f} ms"
    )


def fifty_processes(root: Path) -> None:
    project, config = root / "race", root / "race-config"
    project.mkdir()
    server = CountingServer(root / "server.json")
    expired = session_of(server.seed(ALICE.username, issued_at=time.time() - 3600))
    container = build_project(project, SERVER_URL, server, config_dir=config)
    with container.token_store().lock(5):
        container.token_store().save(expired)
    container.credential_store().save(ALICE)
    go = root / "go"
    results = start_together(
        PROCESSES,
        ["race", str(project), str(config), str(server.state_path), str(root / "ready"), str(go)],
        root / "ready", go,
    )
    lines = [out.split() for _, out, _ in results]
    failed = sum(code != 0 for code, _, _ in results)
    opened = go.stat().st_mtime
    wall = max(float(done) for _, _, done in lines) - opened if not failed else float("nan")
    stats = server.stats()
    print(
        f"{PROCESSES} processes, expired token: {stats['logins'] + stats['refreshes']} auth "
        f"call(s) (goal 1), {stats['replays']} replay(s), "
        f"{len({token for token, _, _ in lines})} distinct token(s), {failed} failure(s), "
        f"wall {wall * 1000:.0f} ms from go to the last token"
    )


def refresh_intent_cost(root: Path) -> None:
    """What the write-ahead intent adds to a refresh on real files: one more atomic,
    fsynced save before the request leaves. Measured beside the whole refresh (a fake
    server in memory, so the network is left out and the storage share is maximal)."""
    from dataclasses import replace

    from adapters.memory import FakeClock, ScriptedGateway

    project, config = root / "intent", root / "intent-config"
    project.mkdir()
    clock = FakeClock(time.time())
    server = ScriptedGateway(clock, {ALICE.username: ALICE.password})
    container = build_project(project, SERVER_URL, server, clock=clock, config_dir=config)
    container.credential_store().save(ALICE)
    provider, store = container.token_provider(), container.token_store()
    provider.get_token()  # the login
    refresh_ms: list[float] = []
    intent_ms: list[float] = []
    for _ in range(RUNS * 4):  # interleaved, so drift hits both series alike
        clock.advance(600)
        start = time.perf_counter()
        provider.get_token()
        refresh_ms.append((time.perf_counter() - start) * 1000)
        stored = store.load()
        assert stored is not None
        marked = replace(stored, refresh_token=None, refresh_in_flight=True)
        with store.lock(5):
            start = time.perf_counter()
            store.save(marked)  # the intent record alone, as the renewal writes it
            intent_ms.append((time.perf_counter() - start) * 1000)
            store.save(stored)
    refresh, intent = statistics.median(refresh_ms), statistics.median(intent_ms)
    print(
        f"refresh on files (server in memory): median {refresh:.2f} ms, of which the "
        f"intent record {intent:.2f} ms ({intent / refresh:.0%}; goal: a few ms at most); "
        f"{server.refreshes} refreshes, {server.replays} replays"
    )


def main() -> None:
    print("== storage ==")
    with tempfile.TemporaryDirectory() as temp:
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(Path(temp) / "pycache")
        fresh_load(Path(temp), cached, "bytecode cached (as installed)")
        uncached = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        fresh_load(Path(temp), uncached, "no bytecode cache")
        fifty_processes(Path(temp))
        refresh_intent_cost(Path(temp))


if __name__ == "__main__":
    main()
