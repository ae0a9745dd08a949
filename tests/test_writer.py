"""The run's writer waits on SQLite in a thread: while a commit waits, the loop keeps measuring (issue 23)."""

from __future__ import annotations

import sqlite3
import threading
import time

import trio

from probe import open_db, read_inputs, run_async
from probe.storage import measurements

HOLD_S = 6.0


async def test_a_database_locked_by_another_process_never_stops_the_loop(net, tmp_path):
    """Once the first measurements are committed, another connection holds the write lock for 6 s. The slow
    URL finishes meanwhile and its commit waits for the lock (busy_timeout); the loop goes on running. Once the
    lock is released, everything measured is stored."""
    path = tmp_path / "w.db"
    db = open_db(path)
    slow = net.http("slow.test")  # a body that never ends: done at the step's timeout (2 s)
    urls = [net.http("ok.test"), net.http("multi.test"), net.http("nx.test"), slow]
    targets, _ = read_inputs(urls)
    window: dict[str, float] = {}

    def hold() -> None:  # as a second process would: a write transaction kept open
        con = sqlite3.connect(path, timeout=30)
        while con.execute("select count(*) from measurements").fetchone()[0] == 0:
            time.sleep(0.005)
        con.execute("begin exclusive")
        window["from"] = time.monotonic()
        time.sleep(HOLD_S)  # a thread's timer: the loop cannot shorten it, whether it runs or not
        window["to"] = time.monotonic()
        con.rollback()
        con.close()

    holder = threading.Thread(target=hold)
    holder.start()
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await trio.sleep(0.01)

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        summary = await run_async(db, targets, net.options(db_path=str(path)))
        nursery.cancel_scope.cancel()
    holder.join()
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    assert set(rows) == set(urls) and summary.measured == len(urls)
    # The slow URL was measured a second or more before the lock went: its commit waited through that second.
    assert window["from"] < started + rows[slow]["runtime_s"] < window["to"] - 1.0, (rows[slow], window, started)
    # Had the writer waited on the loop, not one tick could have happened then.
    last_second = [t for t in ticks if window["to"] - 1.0 < t < window["to"] - 0.05]
    assert len(last_second) > 10, (len(ticks), window)
