"""The HTTP port's snapshot and pacing (pure asyncio, no database, no socket)."""

from __future__ import annotations

import asyncio

from floyo_pipeline.http import FairRate, Snapshot


async def test_a_snapshot_is_computed_once_for_concurrent_callers_and_again_when_stale() -> None:
    computed = 0

    async def compute() -> int:
        nonlocal computed
        computed += 1
        await asyncio.sleep(0.01)
        return computed

    snap = Snapshot(compute, max_age=0.2)
    assert await asyncio.gather(*(snap.get() for _ in range(50))) == [1] * 50
    assert await snap.get() == 1
    await asyncio.sleep(0.25)
    assert await snap.get() == 2


async def test_a_snapshot_of_none_is_a_value_too() -> None:
    calls = 0

    async def compute() -> None:
        nonlocal calls
        calls += 1

    snap: Snapshot[None] = Snapshot(compute, max_age=10)
    await snap.get()
    await snap.get()
    assert calls == 1


async def test_pacing_serves_the_connection_served_longest_ago_first() -> None:
    pace = FairRate(rate=20, burst=1)
    await pace.wait("flooder")  # the burst: served at once
    order: list[str] = []

    async def ask(who: str) -> None:
        await pace.wait(who)
        order.append(who)

    flood = [asyncio.create_task(ask("flooder")) for _ in range(5)]
    await asyncio.sleep(0.001)
    probe = asyncio.create_task(ask("probe"))  # arrives last, was never served
    await asyncio.gather(probe, *flood)
    assert order[0] == "probe"
    assert order.count("flooder") == 5


async def test_pacing_holds_the_rate() -> None:
    pace = FairRate(rate=50, burst=5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(pace.wait(i) for i in range(30)))
    # 5 at once, then 25 at 50 a second: at least half a second (an upper bound would time the machine).
    assert loop.time() - started >= 0.45
