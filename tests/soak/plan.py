"""The fault plan: which fault comes when, drawn from the seed alone (pure, no I/O).

Every kind comes once first, in an order the seed shuffles, then kinds at random, with
exponential gaps between them. Each fault's parameters (a host, a duration, a signal, a
count) are drawn here too, so a seed names the same plan on every machine; only the
timing of the processes the faults land on differs from run to run. The scheduler
starts each fault at its time or, when the resource it needs (the server's fault rules,
the clock, Redis, a host's store) is still taken by the previous one, as soon as it is
free.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MID_REFRESH = ("sigint-mid-refresh", "sigterm-mid-refresh", "kill9-mid-refresh")
KINDS = (
    *MID_REFRESH,
    "kill-anywhere",
    "answer-held",
    "server-restart",
    "revoke-family",
    "burst-503",
    "rate-limit-429",
    "clock-jump",
    "store-read-only",
    "store-immutable",
    "lock-unusable",
    "redis-restart",
    "redis-failover",
)
"""Every fault the soak injects (README and architecture.md claim the client survives
each)."""
HELD_PATHS = ("/api/auth/refresh", "/auth/login", "/api/query")


@dataclass(frozen=True, slots=True)
class Planned:
    """One fault of the plan: when (seconds after the start), what, and its draws."""

    at: float
    kind: str
    params: dict[str, float | int | str] = field(default_factory=dict)


def draw_params(kind: str, rng: random.Random) -> dict[str, float | int | str]:
    """The parameters of one fault of ``kind``."""
    host = rng.randrange(1_000_000)  # taken modulo the number of hosts
    if kind == "kill-anywhere":
        return {"signal": rng.choice(("SIGINT", "SIGTERM", "SIGKILL")),
                "pick": rng.randrange(1_000_000), "library": int(rng.random() < 0.2)}
    if kind in MID_REFRESH:
        return {"host": host}
    if kind == "answer-held":
        return {"path": rng.choice(HELD_PATHS), "count": rng.randint(1, 2),
                "seconds": round(rng.uniform(2, 35), 1)}
    if kind == "server-restart":
        return {"down": round(rng.uniform(0.5, 5), 1), "how": rng.choice(("stop", "kill"))}
    if kind == "revoke-family":
        return {"user": rng.randrange(1_000_000)}
    if kind == "burst-503":
        return {"count": rng.randint(3, 30), "seconds": round(rng.uniform(1, 6), 1)}
    if kind == "rate-limit-429":
        return {"count": rng.randint(3, 30), "seconds": round(rng.uniform(1, 6), 1),
                "retry_after": rng.randint(1, 5)}
    if kind == "clock-jump":
        return {"offset": rng.choice((600, -600)), "seconds": round(rng.uniform(5, 20), 1)}
    if kind in ("store-read-only", "store-immutable"):
        return {"host": host, "seconds": round(rng.uniform(3, 12), 1)}
    if kind == "lock-unusable":
        return {"host": host, "seconds": round(rng.uniform(5, 20), 1)}
    if kind == "redis-failover":
        return {"rejoin_after": round(rng.uniform(3, 10), 1)}
    return {}


def make_plan(seed: int, seconds: float, kinds: tuple[str, ...] = KINDS,
              tail: float | None = None) -> list[Planned]:
    """The faults of a run of ``seconds``: none in its last ``tail`` seconds (a fifth of
    the run, at most 30 s), so the run ends with every fault undone and the client's
    recovery seen."""
    rng = random.Random(seed)
    tail = min(30.0, seconds / 5) if tail is None else tail
    last = seconds - tail
    gap = min(15.0, max(3.0, last / (4 * max(1, len(kinds)))))
    first = list(kinds)
    rng.shuffle(first)
    plan: list[Planned] = []
    at = rng.uniform(1.0, 3.0)
    while at < last:
        kind = first.pop(0) if first else rng.choice(kinds)
        plan.append(Planned(round(at, 1), kind, draw_params(kind, rng)))
        at += min(4 * gap, rng.expovariate(1 / gap))
    return plan
