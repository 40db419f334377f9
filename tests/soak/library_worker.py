"""A soak host's library worker: one process using the public API as an application
would, with threads sharing one `CidxClient` and asyncio tasks sharing one
`AsyncCidxClient`, all behind one `open_project`, until the run's end.

Run as ``python -m tests.soak.library_worker --project DIR --host NAME --out FILE ...``.
Each call is appended to ``--out`` as one JSON line with the fields of
``tests.soak.verdict.Call``: a `CidxAuthError` is a failure with its exit code and
message (messages hold no secret); any other exception is a failure with a traceback,
which is also printed on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from cidx_auth import AsyncCidxClient, CidxAuthError, CidxClient, Project, open_project
from tests.soak.verdict import Call

PAUSE = (0.1, 0.5)
"""Seconds between two calls of one thread or task: the library is cheap, and the CLI
processes should not be starved of the two cores."""
TEXTS = ("token refresh", "retry with backoff", "parse the JWT")
RECORDED = "soak: the traceback below is in a call's record"


class Sink:
    """Appends records to the output file, one line each, from any thread."""

    def __init__(self, path: str, host: str) -> None:
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - closed at exit
        self._lock = threading.Lock()
        self.host = host

    def record(self, worker: str, kind: str, start: float, error: BaseException | None) -> None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        code, name, line, crashed = 0, "", "", False
        if isinstance(error, CidxAuthError):
            code, name, line = error.exit_code, type(error).__name__, str(error)[:300]
        elif error is not None:
            code, name, line, crashed = 1, type(error).__name__, str(error)[:300], True
            print(RECORDED, file=sys.stderr)  # the supervisor does not count it twice
            traceback.print_exception(error, file=sys.stderr)
        call = Call(self.host, worker, kind, start, time.time(), code, name, line, crashed,
                    rss)
        with self._lock:
            self._file.write(json.dumps(asdict(call)) + "\n")


def sync_calls(client: CidxClient, rng: random.Random) -> tuple[str, Callable[[], Any]]:
    if rng.random() < 0.75:
        text = rng.choice(TEXTS)
        return "query", lambda: client.query(text, limit=3)
    return "repos", client.repos


def async_calls(client: AsyncCidxClient,
                rng: random.Random) -> tuple[str, Callable[[], Awaitable[Any]]]:
    if rng.random() < 0.75:
        text = rng.choice(TEXTS)
        return "query", lambda: client.query(text, "backend", limit=3)
    return "repos", client.repos


def thread_loop(client: CidxClient, sink: Sink, name: str, until: float) -> None:
    rng = random.Random()
    while time.time() < until:
        kind, call = sync_calls(client, rng)
        start = time.time()
        try:
            call()
        except Exception as error:
            sink.record(name, kind, start, error)
        else:
            sink.record(name, kind, start, None)
        time.sleep(rng.uniform(*PAUSE))


async def task_loop(client: AsyncCidxClient, sink: Sink, name: str, until: float) -> None:
    rng = random.Random()
    while time.time() < until:
        kind, call = async_calls(client, rng)
        start = time.time()
        try:
            await call()
        except Exception as error:
            sink.record(name, kind, start, error)
        else:
            sink.record(name, kind, start, None)
        await asyncio.sleep(rng.uniform(*PAUSE))


async def tasks(project: Project, sink: Sink, count: int, until: float) -> None:
    async with project.async_client() as client:
        await asyncio.gather(*(task_loop(client, sink, f"lib-task-{number}", until)
                               for number in range(count)))


def opened(path: str, sink: Sink, until: float) -> Project | None:
    """The project, once it opens (a failure is recorded and tried again each second)."""
    while time.time() < until:
        start = time.time()
        try:
            return open_project(path)
        except Exception as error:
            sink.record("lib-open", "open", start, error)
        time.sleep(1.0)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.library_worker")
    parser.add_argument("--project", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--until", type=float, required=True)
    args = parser.parse_args(argv)
    sink = Sink(args.out, args.host)
    project = opened(args.project, sink, args.until)
    if project is None:
        return
    with project, project.client() as client:
        threads = [threading.Thread(target=thread_loop, name=f"lib-thread-{number}",
                                    args=(client, sink, f"lib-thread-{number}", args.until))
                   for number in range(args.threads)]
        for thread in threads:
            thread.start()
        asyncio.run(tasks(project, sink, args.tasks, args.until))
        for thread in threads:
            thread.join()


if __name__ == "__main__":
    main()
