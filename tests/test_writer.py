"""The run's writer waits on SQLite in a thread: while a commit waits, the loop keeps measuring (issue 23)."""

from __future__ import annotations

import sqlite3
import threading
import time

import trio

from probe import open_db, read_inputs, run_async
from probe.storage import measurements

HOLD_S = 2.0


async def test_a_database_locked_by_another_process_never_stops_the_loop(net, tmp_path):
    """Another connection holds the write lock for 2 s: the writer's commit waits for it (busy_timeout), and the
    loop goes on meanwhile; once the lock is released everything measured is stored."""
    path = tmp_path / "w.db"
    db = open_db(path)
    urls = [net.http("ok.test"), net.http("multi.test"), net.https("ok.test"), net.http("nx.test")]
    targets, _ = read_inputs(urls)
    window: dict[str, float] = {}

    def hold() -> None:  # as a second process would: a write transaction kept open, from once the run exists
        con = sqlite3.connect(path)
        while con.execute("select count(*) from runs").fetchone()[0] == 0:
            time.sleep(0.001)
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

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        summary = await run_async(db, targets, net.options(db_path=str(path)))
        nursery.cancel_scope.cancel()
    holder.join()
    # Four loopback URLs are measured well inside the first second; from then on the writer waits on the lock.
    # Had it waited on the loop, no tick could happen in the lock's last second.
    last_second = [t for t in ticks if window["to"] - 1.0 < t < window["to"] - 0.05]
    assert len(last_second) > 10, (len(ticks), window)
    assert summary.measured == len(urls)
    assert {m["url"] for m in measurements(db, summary.run_id)} == set(urls)
