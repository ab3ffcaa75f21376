"""ByteBudget: reservations wait a little for room, are refused after, and fit first come first served."""

from __future__ import annotations

import asyncio

import pytest

from lookalike.byte_budget import ByteBudget

pytestmark = pytest.mark.anyio


async def test_a_reservation_that_fits_is_taken_at_once_and_given_back() -> None:
    budget = ByteBudget(100)
    assert await budget.reserve(60, wait_s=0)
    assert budget.in_use == 60
    budget.release(60)
    assert budget.in_use == 0


async def test_one_that_does_not_fit_waits_then_is_refused() -> None:
    budget = ByteBudget(100)
    assert await budget.reserve(80, wait_s=0)
    assert not await budget.reserve(30, wait_s=0.05)
    assert budget.in_use == 80


async def test_a_waiter_is_let_in_when_room_is_given_back() -> None:
    budget = ByteBudget(100)
    await budget.reserve(80, wait_s=0)
    waiting = asyncio.ensure_future(budget.reserve(30, wait_s=5))
    await asyncio.sleep(0.01)
    budget.release(80)
    assert await waiting
    assert budget.in_use == 30


async def test_a_small_one_fits_past_a_large_one_still_waiting() -> None:
    budget = ByteBudget(100)
    await budget.reserve(70, wait_s=0)
    large = asyncio.ensure_future(budget.reserve(60, wait_s=0.2))
    await asyncio.sleep(0.01)
    assert await budget.reserve(20, wait_s=0)
    assert not await large
    assert budget.in_use == 90


async def test_one_larger_than_the_whole_budget_runs_alone() -> None:
    budget = ByteBudget(100)
    assert await budget.reserve(500, wait_s=0)
    assert budget.in_use == 100
    budget.release(500)
    assert budget.in_use == 0


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    budget = ByteBudget(100)
    await budget.reserve(100, wait_s=0)
    waiting = asyncio.ensure_future(budget.reserve(50, wait_s=5))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    budget.release(100)
    assert budget.in_use == 0
