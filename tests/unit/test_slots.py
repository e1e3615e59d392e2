"""Worker slots shared by threads and tasks: bounded, first come first served, never lost."""

from __future__ import annotations

import asyncio
import threading
import time

from demessaging.backend.slots import Slots


def test_threads_take_no_more_slots_than_there_are() -> None:
    slots = Slots(2)
    assert slots.take(0.01)
    assert slots.take(0.01)
    started = time.monotonic()
    assert not slots.take(0.05)
    assert time.monotonic() - started >= 0.04
    slots.release()
    assert slots.take(0.01)


def test_a_slot_given_back_goes_to_a_waiting_thread() -> None:
    slots = Slots(1)
    assert slots.take(0.01)
    took: list[bool] = []
    waiter = threading.Thread(target=lambda: took.append(slots.take(5.0)))
    waiter.start()
    time.sleep(0.05)
    slots.release()
    waiter.join(5)
    assert took == [True]
    assert not slots.take(0.01)  # the slot went to the waiter, not back to the pool


def test_tasks_and_threads_wait_in_one_line() -> None:
    async def main() -> list[str]:
        slots = Slots(1)
        await slots.acquire()
        order: list[str] = []
        task = asyncio.ensure_future(slots.acquire())
        task.add_done_callback(lambda _: order.append("task"))
        await asyncio.sleep(0.01)  # the task waits first

        def take() -> None:
            if slots.take(5.0):
                order.append("thread")

        thread = threading.Thread(target=take)
        thread.start()
        await asyncio.sleep(0.05)
        slots.release()  # to the task
        await asyncio.wait_for(task, 5)
        assert order == ["task"]
        slots.release()  # to the thread
        await asyncio.to_thread(thread.join, 5)
        return order

    assert asyncio.run(main()) == ["task", "thread"]


def test_a_waiting_task_that_is_cancelled_loses_no_slot() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        waiting = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        slots.release()
        await asyncio.wait_for(slots.acquire(), 1)  # the one slot is there

        # given, and cancelled before it heard: the slot comes back
        given = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0.01)
        slots.release()  # the waiter hears on the loop's next turn
        given.cancel()
        assert isinstance((await asyncio.gather(given, return_exceptions=True))[0], BaseException)
        await asyncio.sleep(0.01)
        assert slots.take(0.5)
        assert not slots.take(0.01)

    asyncio.run(main())


def test_a_thread_that_gives_up_as_the_slot_comes_keeps_it() -> None:
    slots = Slots(1)
    assert slots.take(0.01)
    results: list[bool] = []
    for _ in range(50):  # release races the waiter's timeout: the slot is held or free, once
        waiter = threading.Thread(target=lambda: results.append(slots.take(0.001)))
        waiter.start()
        slots.release()
        waiter.join(5)
        if results[-1]:
            slots.release()
        assert slots.take(0.5)  # exactly one slot, held by us again
    assert not slots.take(0.01)
