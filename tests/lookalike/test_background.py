"""A background loop that dies is logged and started again, never left dead in silence."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lookalike.background import Supervised

pytestmark = pytest.mark.anyio


async def test_a_loop_that_dies_is_logged_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    running_again = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise KeyError("an error nobody foresaw")
        running_again.set()
        await asyncio.sleep(3600)

    task = Supervised("test-loop", loop, restart_after_s=0.01)
    with caplog.at_level(logging.ERROR, "lookalike.background"):
        task.start()
        await asyncio.wait_for(running_again.wait(), 5)
        await task.stop()
    assert runs == 2 and task.restarts == 1
    died = [r for r in caplog.records if "test-loop died" in r.getMessage()]
    assert died and died[0].exc_info and "an error nobody foresaw" in str(died[0].exc_info[1])


async def test_stop_ends_it_for_good() -> None:
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(3600)

    task = Supervised("test-loop", loop, restart_after_s=0.01)
    task.start()
    await asyncio.sleep(0.05)
    await task.stop()
    await asyncio.sleep(0.05)
    assert runs == 1 and task.restarts == 0
