"""The collector's HTTP API, on Starlette, served by hypercorn on trio.

    POST /v1/measurements  Authorization: Bearer TOKEN, a batch (wire.py) -> {"stored": n, "duplicates": m}
    POST /v1/known         Authorization: Bearer TOKEN, {"run": UUID}    -> {"measurements": [uuid, ...]}
    GET  /v1/health        -> {"ok": true}

Every refusal is an HTTP error with a one-line JSON reason (`{"error": "..."}`) and stores nothing: 400 not
JSON, 401 missing, unknown or revoked token, 408 a body slower than --body-timeout, 413 a body over --max-body
or more than --max-items measurements, 415 not JSON's content type, 422 a batch of the wrong shape (all or
nothing), 429 over the token's rate (with Retry-After). A batch is acknowledged (200) only once committed to
disk. The client's address is never read: no access log, and nothing here or in the store looks at it.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import wire
from .store import Store

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    max_body: int = 16 * MiB
    max_items: int = 1000
    rate_per_minute: float = 120.0  # requests per token; a volunteer's upload is a few requests per run
    burst: int = 30
    body_timeout: float = 60.0


class RateLimiter:
    """A token bucket per volunteer token: `burst` requests at once, refilled at `rate_per_minute`."""

    def __init__(self, rate_per_minute: float, burst: int) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self.buckets: dict[str, tuple[float, float]] = {}

    def wait(self, key: str) -> float:
        """0 when a request may go now (and it is counted), else the seconds until one may."""
        now = time.monotonic()
        level, then = self.buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - then) * self.rate)
        if level >= 1.0:
            self.buckets[key] = (level - 1.0, now)
            return 0.0
        self.buckets[key] = (level, now)
        return (1.0 - level) / self.rate if self.rate > 0 else math.inf


def _error(e: wire.Invalid) -> JSONResponse:
    headers = {}
    if e.status == 429:
        headers["Retry-After"] = str(max(1, math.ceil(e.retry_after)))
    return JSONResponse({"error": str(e)}, status_code=e.status, headers=headers)


def make_app(store: Store, limits: Limits, say: Callable[[str], None]) -> Starlette:
    """The ASGI app; call it inside trio (it makes the store's CapacityLimiter)."""
    one_writer = trio.CapacityLimiter(1)
    rates = RateLimiter(limits.rate_per_minute, limits.burst)

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=one_writer)

    async def authorised(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise wire.Invalid(401, "no token: send `Authorization: Bearer <token>` (a researcher issues tokens "
                                    "with `probe collector token add`)")
        name = await in_thread(store.token_name, token.strip())
        if name is None:
            raise wire.Invalid(401, "unknown or revoked token")
        wait = rates.wait(name)
        if wait > 0:
            raise wire.Invalid(429, f"too many requests for this token: retry in {math.ceil(wait)} s", wait)
        return name

    async def body(request: Request) -> bytes:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise wire.Invalid(415, "the body must be application/json")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.max_body):
            raise wire.Invalid(413, f"body of {length} bytes; at most {limits.max_body}: send smaller batches")
        chunks: list[bytes] = []
        size = 0
        with trio.move_on_after(limits.body_timeout) as scope:
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_body:
                        raise wire.Invalid(413, f"body over {limits.max_body} bytes: send smaller batches")
                    chunks.append(chunk)
            except ClientDisconnect:  # nobody to answer; nothing was stored
                raise wire.Invalid(400, "the client went away before its body arrived") from None
        if scope.cancelled_caught:
            raise wire.Invalid(408, f"the body did not arrive within {limits.body_timeout:g} s")
        return b"".join(chunks)

    def check_and_store(name: str, raw: bytes) -> dict[str, int]:
        items = wire.parse_batch(raw, limits.max_items)  # CPU work too: in the thread, off the event loop
        done = store.store(name, items)
        return {"stored": done.stored, "duplicates": done.duplicates}

    async def measurements(request: Request) -> JSONResponse:
        try:
            name = await authorised(request)
            raw = await body(request)
            result = await in_thread(check_and_store, name, raw)
        except wire.Invalid as e:
            return _error(e)
        say(f"{name}: {result['stored']} stored, {result['duplicates']} already there")
        return JSONResponse(result)

    async def known(request: Request) -> JSONResponse:
        try:
            await authorised(request)
            run_uuid = wire.parse_known(await body(request))
        except wire.Invalid as e:
            return _error(e)
        return JSONResponse({"measurements": await in_thread(store.known, run_uuid)})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[
        Route(f"/{wire.MEASUREMENTS_PATH}", measurements, methods=["POST"]),
        Route(f"/{wire.KNOWN_PATH}", known, methods=["POST"]),
        Route(f"/{wire.HEALTH_PATH}", health, methods=["GET"]),
    ])


async def stop_on_signal() -> None:
    """Returns at SIGINT or SIGTERM: hypercorn then stops accepting, lets requests in flight finish, and the
    collector exits 0 (a kill -9 is safe too: nothing is acknowledged before it is committed)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def serve(store: Store, limits: Limits, host: str, port: int, *, certfile: str | None = None,
                keyfile: str | None = None, say: Callable[[str], None] = print,
                shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
                task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until `shutdown_trigger` returns (or until cancelled); `task_status.started` gets the bound URLs
    (port 0 picks a free one)."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None  # an access log would hold every volunteer's address
    quiet = logging.getLogger("probe.collector.hypercorn")
    quiet.setLevel(logging.WARNING)
    config.errorlog = quiet
    config.include_server_header = False
    # hypercorn's own idle-read timeout is for slow headers; a body has --body-timeout (408) in full, so this one
    # must not fire first (it would cut the request with a 500).
    config.read_timeout = math.ceil(limits.body_timeout) + 10
    if certfile:
        config.certfile, config.keyfile = certfile, keyfile
    app = make_app(store, limits, say)
    await hypercorn_serve(app, config, shutdown_trigger=shutdown_trigger,  # type: ignore[arg-type]
                          task_status=task_status)
