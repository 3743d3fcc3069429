"""A light open-loop client: requests at a steady rate, each one recorded.

`SteadyLoad` runs an asyncio loop with an `httpx.AsyncClient` in a background thread and
starts one request every 1/rate seconds whatever the previous ones are doing (so a stall
shows up as latency and in-flight requests, not as a slower client). Each request is a
`Rec`: operation, read or write, when it was sent and answered, status or transport
error, Retry-After. Helpers summarise a list of them.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx


@dataclass
class Rec:
    op: str
    kind: str  # "read" | "write"
    t0: float  # time.monotonic() when the request was handed to the client
    t1: float | None = None  # when the response (or error) came back
    status: int | None = None  # None: transport error (error says which)
    error: str | None = None
    retry_after: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def latency(self) -> float:
        return (self.t1 if self.t1 is not None else time.monotonic()) - self.t0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def is_5xx(self) -> bool:
        return self.status is not None and self.status >= 500


@dataclass
class Request:
    method: str
    path: str
    token: str | None = None
    data: dict | None = None
    params: Any = None
    meta: dict = field(default_factory=dict)


@dataclass
class Op:
    """One kind of request. `make(i)` builds the i-th request of this kind; `on_ok`
    sees every 2xx response (to remember created ids)."""

    name: str
    kind: str
    make: Callable[[int], Request]
    weight: int = 1
    on_ok: Callable[[Request, httpx.Response], None] | None = None


class SteadyLoad:
    def __init__(
        self,
        base_url: str,
        ops: list[Op],
        rate: float,
        *,
        timeout: float = 15.0,
        max_in_flight: int = 200,
        keepalive: bool = True,
        name: str = "load",
    ):
        self.base_url = base_url
        self.ops = ops
        self.rate = rate
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.keepalive = keepalive
        self.name = name
        self.records: list[Rec] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._in_flight = 0
        # Weighted round robin, deterministic.
        self._cycle = [op for op in ops for _ in range(op.weight)]
        self._counters: dict[str, itertools.count] = {op.name: itertools.count() for op in ops}

    # ------------------------------------------------------------------ control
    def start(self) -> "SteadyLoad":
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, drain: float | None = None) -> list[Rec]:
        """Stops sending and waits (up to `drain` s, default the request timeout + 2 s)
        for the requests in flight."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join((drain if drain is not None else self.timeout) + 5)
        if self._error is not None:
            raise self._error
        return list(self.records)

    def snapshot(self) -> list[Rec]:
        return list(self.records)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def __enter__(self) -> "SteadyLoad":
        return self.start()

    def __exit__(self, *exc) -> None:
        if not self._stop.is_set():
            self.stop()

    # ------------------------------------------------------------------ engine
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - re-raised by stop()
            self._error = e

    async def _main(self) -> None:
        limits = httpx.Limits(
            max_connections=self.max_in_flight,
            max_keepalive_connections=self.max_in_flight if self.keepalive else 0,
        )
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, limits=limits) as client:
            tasks: set[asyncio.Task] = set()
            interval = 1.0 / self.rate
            next_at = time.monotonic()
            for i in itertools.count():
                if self._stop.is_set():
                    break
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
                op = self._cycle[i % len(self._cycle)]
                if self._in_flight >= self.max_in_flight:
                    now = time.monotonic()
                    self.records.append(Rec(op.name, op.kind, now, now, None, "client backlog full"))
                    continue
                task = asyncio.ensure_future(self._one(client, op))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout + 2)

    async def _one(self, client: httpx.AsyncClient, op: Op) -> None:
        try:
            req = op.make(next(self._counters[op.name]))
        except Exception as e:  # noqa: BLE001 - a bug in the op, not the server
            now = time.monotonic()
            self.records.append(Rec(op.name, op.kind, now, now, None, f"op error: {e!r}"))
            return
        headers = {"Authorization": f"Bearer {req.token}"} if req.token else {}
        rec = Rec(op.name, op.kind, time.monotonic(), meta=dict(req.meta))
        self.records.append(rec)
        self._in_flight += 1
        try:
            resp = await client.request(req.method, req.path, headers=headers, data=req.data, params=req.params)
            await resp.aread()
            rec.t1 = time.monotonic()
            rec.status = resp.status_code
            rec.retry_after = resp.headers.get("retry-after")
            if resp.is_success and op.on_ok is not None:
                op.on_ok(req, resp)
        except Exception as e:  # noqa: BLE001 - recorded as a transport error
            rec.t1 = time.monotonic()
            rec.error = type(e).__name__ + (f": {e}" if str(e) else "")
        finally:
            self._in_flight -= 1


# ---------------------------------------------------------------------- summaries
def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def between(recs: list[Rec], t_a: float, t_b: float) -> list[Rec]:
    """Requests sent in [t_a, t_b)."""
    return [r for r in recs if t_a <= r.t0 < t_b]


def of(recs: list[Rec], *, kind: str | None = None, ops: tuple[str, ...] | None = None) -> list[Rec]:
    return [r for r in recs if (kind is None or r.kind == kind) and (ops is None or r.op in ops)]


def statuses(recs: list[Rec]) -> dict[str, int]:
    c = collections.Counter(str(r.status) if r.status is not None else "err" for r in recs)
    return dict(sorted(c.items()))


def errors(recs: list[Rec], limit: int = 3) -> list[str]:
    c = collections.Counter(r.error for r in recs if r.error)
    return [f"{n}x {e}" for e, n in c.most_common(limit)]


def ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def describe(recs: list[Rec]) -> str:
    """`n=.. {status: count} p50=..ms p99=..ms max=..ms`."""
    lat = [r.latency for r in recs if r.t1 is not None]
    return (
        f"n={len(recs)} {statuses(recs)} p50={ms(pct(lat, 50))}ms p99={ms(pct(lat, 99))}ms "
        f"max={ms(max(lat) if lat else 0)}ms"
    )
