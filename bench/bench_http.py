"""HTTP figures: what CidxAuth and the API client add to a request, next to authlib.

One reference server on loopback (TLS, HTTP/2), one token, the same request
(``GET /api/repos``) sent one after another by each variant. Variants run in
interleaved rounds, in a new random order each round, so drift hits them alike; the
figure is the median per-request time, and the ratio compares it with a bare httpx
client that carries a fixed ``Authorization`` header, measured in the same run.

authlib's ``AsyncOAuth2Client`` is given the same token statically: its own refresh
speaks the OAuth2 form-encoded ``grant_type=refresh_token``, which the CIDX server's
JSON refresh endpoint does not accept. It runs over HTTP/1.1 only: it rebuilds each
request with an empty body stream, and the reference server (hypercorn) closes an
HTTP/2 connection whose request stream is still open when it has answered.

Environment: ``CIDX_BENCH_ROUNDS``, ``CIDX_BENCH_REQUESTS`` shrink or grow the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.cidx_client import AsyncCidxClient, CidxClient
from adapters.events import CountingSink
from adapters.file_state_store import FileStateStore
from adapters.http_settings import HttpSettings, make_async_client, make_client, ssl_context
from adapters.httpx_auth import CidxAuth
from adapters.httpx_gateway import HttpxGateway
from adapters.memory import MemoryCredentialStore, MemoryStateStore, MemoryTokenStore
from adapters.system_clock import SystemClock
from cidx_auth.app.container import Container
from cidx_auth.domain.credentials import Credentials
from cidx_auth.service.breaker import CircuitBreaker
from cidx_auth.service.provider import TokenProvider
from refserver.config import ServerConfig
from refserver.runner import RunningServer

ROUNDS = int(os.environ.get("CIDX_BENCH_ROUNDS", "15"))
REQUESTS = int(os.environ.get("CIDX_BENCH_REQUESTS", "150"))  # per variant per round
GOAL = 1.05
PATH = "/api/repos"


def wire(server: RunningServer) -> tuple[HttpSettings, TokenProvider, HttpxGateway]:
    settings = HttpSettings(server.url, ca_bundle=server.ca_file, http2=False)
    gateway = HttpxGateway(settings)
    container = Container(
        clock=SystemClock(), token_store=MemoryTokenStore(), state_store=MemoryStateStore(),
        credential_store=MemoryCredentialStore(Credentials("alice", "secret")),
        gateway=gateway, events=CountingSink(),
    )
    return settings, container.token_provider(), gateway


def breaker(state: Any) -> CircuitBreaker:
    return CircuitBreaker(state, SystemClock(), CountingSink())


async def timed_async(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    for _ in range(REQUESTS):
        await call()
    return (time.perf_counter() - start) / REQUESTS


def timed_sync(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    for _ in range(REQUESTS):
        call()
    return (time.perf_counter() - start) / REQUESTS


def report(title: str, samples: dict[str, list[float]]) -> None:
    base = statistics.median(samples["static header"])
    print(title)
    for name, times in samples.items():
        median = statistics.median(times)
        print(f"  {name:<28} {median * 1e6:8.0f} us/request   {median / base:5.3f}x")


async def async_figures(settings: HttpSettings, provider: TokenProvider,
                        state_dir: Path) -> dict[str, list[float]]:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    token = await provider.aget_token()
    static = make_async_client(settings, context=ssl_context(settings))
    static.headers["Authorization"] = f"Bearer {token}"
    cidx_auth = make_async_client(settings, auth=CidxAuth(provider, settings.server))
    oauth = AsyncOAuth2Client(
        token={"access_token": token, "token_type": "bearer", "expires_at": time.time() + 3600},
        base_url=settings.server, verify=ssl_context(settings), http2=settings.http2,
        timeout=settings.timeout(), limits=settings.limits())
    memory = AsyncCidxClient(settings, provider, breaker(MemoryStateStore()), clock=SystemClock())
    files = AsyncCidxClient(
        settings, provider,
        breaker(FileStateStore(state_dir / ".state", state_dir / ".state.lock")),
        clock=SystemClock())
    variants: dict[str, Callable[[], Awaitable[Any]]] = {
        "static header": lambda: static.get(PATH),
        "CidxAuth": lambda: cidx_auth.get(PATH),
        "authlib AsyncOAuth2Client": lambda: oauth.get(PATH),
        "AsyncCidxClient (mem state)": memory.repos,
        "AsyncCidxClient (file state)": files.repos,
    }
    if settings.http2:
        del variants["authlib AsyncOAuth2Client"]  # see the module docstring
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():  # warm-up: connections open, HTTP/2 negotiated
        await call()
    for _ in range(ROUNDS):
        for name in random.sample(list(variants), len(variants)):
            samples[name].append(await timed_async(variants[name]))
    for client in (static, cidx_auth, oauth):
        await client.aclose()
    for api in (memory, files):
        await api.aclose()
    return samples


def sync_figures(settings: HttpSettings, provider: TokenProvider) -> dict[str, list[float]]:
    static = make_client(settings, context=ssl_context(settings))
    static.headers["Authorization"] = f"Bearer {provider.get_token()}"
    cidx_auth = make_client(settings, auth=CidxAuth(provider, settings.server))
    api = CidxClient(settings, provider, breaker(MemoryStateStore()), clock=SystemClock())
    variants: dict[str, Callable[[], Any]] = {
        "static header": lambda: static.get(PATH),
        "CidxAuth": lambda: cidx_auth.get(PATH),
        "CidxClient (mem state)": api.repos,
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():
        call()
    for _ in range(ROUNDS):
        for name in random.sample(list(variants), len(variants)):
            samples[name].append(timed_sync(variants[name]))
    static.close()
    cidx_auth.close()
    api.close()
    return samples


def flow_alone(provider: TokenProvider, calls: int = 20_000) -> None:
    """CidxAuth's own cost per request, no network: the sync flow driven by hand."""
    auth = CidxAuth(provider, "https://cidx.test")
    request = httpx.Request("GET", "https://cidx.test/api/repos")
    answer = httpx.Response(200)
    start = time.perf_counter()
    for _ in range(calls):
        flow = auth.sync_auth_flow(request)
        next(flow)
        with contextlib.suppress(StopIteration):
            flow.send(answer)
    cost = (time.perf_counter() - start) / calls
    print(f"CidxAuth flow alone (bearer + fast-path token, no I/O): {cost * 1e6:.1f} us/request")


def main() -> None:
    warnings.simplefilter("ignore")  # authlib warns that it prefers the httpx2 package
    print(f"HTTP overhead: {ROUNDS} interleaved rounds x {REQUESTS} sequential GET {PATH} "
          "on a loopback reference server over TLS; median per request")
    ratios: list[str] = []
    with RunningServer(ServerConfig(users={"alice": "secret"}), tls=True) as server, \
            tempfile.TemporaryDirectory() as state_dir:
        settings, provider, gateway = wire(server)
        for http2 in (False, True):
            settings = replace(settings, http2=http2)
            protocol = "HTTP/2" if http2 else "HTTP/1.1"
            figures = {
                "asyncio": asyncio.run(async_figures(settings, provider, Path(state_dir))),
                "blocking": sync_figures(settings, provider),
            }
            for mode, samples in figures.items():
                report(f"{protocol}, {mode}", samples)
                ratio = statistics.median(samples["CidxAuth"]) / statistics.median(
                    samples["static header"])
                verdict = "met" if ratio <= GOAL else "NOT met"
                ratios.append(f"CidxAuth / static header ({protocol}, {mode}): {ratio:.3f}x "
                              f"(goal <= {GOAL}x: {verdict})")
        flow_alone(provider)
        gateway.close()
    print("\n".join(ratios))


if __name__ == "__main__":
    main()
