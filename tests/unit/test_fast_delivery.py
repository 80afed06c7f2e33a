"""The fast path of faust's record hand-over: deliveries that do not wait run without tasks, the others as before."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from faust.transport.consumer import Consumer
from mode import Service

from topologies.fast_delivery import (
    ResumedCoroutine,
    apply_fast_delivery,
    is_delivery_call,
    make_fast_wait_first,
)

ORIGINAL_WAIT_FIRST = Service.wait_first

DELIVERY_STEP = contextvars.ContextVar("delivery_step", default="unset")


class DrainingService(Service):
    """A service with the consumer attribute that the fast path reads, and the wait_first under test."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.suspend_flow = asyncio.Event()
        self.original_calls = 0

    async def original_wait_first(self, *coros, timeout=None):
        self.original_calls += 1
        return await ORIGINAL_WAIT_FIRST(self, *coros, timeout=timeout)

    async def wait_first(self, *coros, timeout=None):
        return await make_fast_wait_first(type(self).original_wait_first)(self, *coros, timeout=timeout)


class Buffer:
    """A bounded buffer whose put waits for room, like a stream's queue."""

    def __init__(self, room: int) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=room)
        self.cancelled = 0

    async def deliver(self, item) -> str:
        try:
            await self.queue.put(item)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return f"delivered {item}"


def test_fast_path_delivers_without_tasks() -> None:
    async def scenario():
        service = DrainingService()
        buffer = Buffer(room=1)
        tasks_before = len(asyncio.all_tasks())
        suspend_wait = service.suspend_flow.wait()
        results = await service.wait_first(buffer.deliver(1), suspend_wait)
        return results, len(asyncio.all_tasks()) - tasks_before, suspend_wait, service, buffer

    results, new_tasks, suspend_wait, service, buffer = asyncio.run(scenario())

    assert results.results == ["delivered 1"]
    assert not results.stopped
    assert new_tasks == 0
    assert service.original_calls == 0
    assert buffer.queue.qsize() == 1
    # The suspend wait is closed without running, so Python logs no
    # "coroutine was never awaited" warning for it.
    assert suspend_wait.cr_frame is None


def test_fast_path_waiting_delivery_finishes() -> None:
    async def scenario():
        service = DrainingService()
        buffer = Buffer(room=1)
        buffer.queue.put_nowait(0)
        room = asyncio.get_running_loop().call_later(0.01, buffer.queue.get_nowait)
        results = await service.wait_first(buffer.deliver(1), service.suspend_flow.wait())
        room.cancel()
        return results, service, buffer

    results, service, buffer = asyncio.run(scenario())

    assert results.results == ["delivered 1"]
    assert service.original_calls == 1
    assert list(buffer.queue._queue) == [1]


def test_fast_path_rebalance_interrupts_waiting_delivery() -> None:
    async def scenario():
        service = DrainingService()
        buffer = Buffer(room=1)
        buffer.queue.put_nowait(0)
        # A rebalance sets the consumer's suspend_flow while the delivery waits.
        asyncio.get_running_loop().call_later(0.01, service.suspend_flow.set)
        results = await service.wait_first(buffer.deliver(1), service.suspend_flow.wait())
        # Let the cancelled delivery task run its cancellation.
        await asyncio.sleep(0)
        return results, buffer

    results, buffer = asyncio.run(scenario())

    assert results.results == [True]
    assert buffer.cancelled == 1
    assert list(buffer.queue._queue) == [0]


def test_fast_path_delivery_error_propagates() -> None:
    async def failing_delivery():
        raise ValueError("cannot decode")

    async def scenario():
        service = DrainingService()
        suspend_wait = service.suspend_flow.wait()
        with pytest.raises(ValueError, match="cannot decode"):
            await service.wait_first(failing_delivery(), suspend_wait)
        return suspend_wait

    assert asyncio.run(scenario()).cr_frame is None


def test_fast_path_skipped_when_flow_suspended() -> None:
    async def scenario():
        service = DrainingService()
        service.suspend_flow.set()
        buffer = Buffer(room=1)
        results = await service.wait_first(buffer.deliver(1), service.suspend_flow.wait())
        return results, service

    _, service = asyncio.run(scenario())

    assert service.original_calls == 1


def test_fast_path_skipped_when_stopped() -> None:
    async def scenario():
        service = DrainingService()
        service._stopped.set()
        results = await service.wait_first(Buffer(room=1).deliver(1), service.suspend_flow.wait())
        return results, service

    results, service = asyncio.run(scenario())

    assert results.stopped
    assert service.original_calls == 1


def test_fast_path_passes_other_calls_through() -> None:
    async def scenario():
        service = DrainingService()
        event = asyncio.Event()
        event.set()
        await service.wait_first(event)
        await service.wait_first(Buffer(room=1).deliver(1), service.suspend_flow.wait(), timeout=1.0)
        return service

    assert asyncio.run(scenario()).original_calls == 2


def test_fast_path_delivery_context_is_copied() -> None:
    async def marking_delivery(future):
        DELIVERY_STEP.set("first step")
        await future
        seen = DELIVERY_STEP.get()
        DELIVERY_STEP.set("finished")
        return seen

    async def scenario():
        service = DrainingService()
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, future.set_result, None)
        results = await service.wait_first(marking_delivery(future), service.suspend_flow.wait())
        return results, DELIVERY_STEP.get()

    results, caller_value = asyncio.run(scenario())

    # The finishing task continues in the context of the first step, and the
    # caller's context keeps its own value, as with a task of its own.
    assert results.results == ["first step"]
    assert caller_value == "unset"


def test_is_delivery_call_cases() -> None:
    async def deliver():
        return None

    async def other():
        return None

    event = asyncio.Event()
    cases = [
        ((deliver(), event.wait()), None, True),
        ((deliver(), event.wait()), 1.0, False),
        ((deliver(), other()), None, False),
        ((deliver(),), None, False),
        ((event, event.wait()), None, False),
    ]
    for coros, timeout, expected in cases:
        assert is_delivery_call(coros, timeout) is expected
        for coro in coros:
            if asyncio.iscoroutine(coro):
                coro.close()


def test_resumed_coroutine_passes_yields_on() -> None:
    async def steps(future):
        await asyncio.sleep(0)
        value = await future
        await asyncio.sleep(0)
        return value + 1

    async def scenario():
        future = asyncio.get_running_loop().create_future()
        coroutine = steps(future)
        first = coroutine.send(None)
        asyncio.get_running_loop().call_later(0.01, future.set_result, 41)
        return first, await asyncio.ensure_future(_await(ResumedCoroutine(coroutine, first)))

    first, result = asyncio.run(scenario())

    assert first is None
    assert result == 42


def test_resumed_coroutine_receives_cancellation() -> None:
    async def steps(future):
        try:
            await future
        except asyncio.CancelledError:
            return "cleaned up"
        return "not cancelled"

    async def scenario():
        future = asyncio.get_running_loop().create_future()
        coroutine = steps(future)
        first = coroutine.send(None)
        task = asyncio.ensure_future(_await(ResumedCoroutine(coroutine, first)))
        await asyncio.sleep(0)
        task.cancel()
        return await task

    assert asyncio.run(scenario()) == "cleaned up"


def test_apply_fast_delivery_patches_once() -> None:
    apply_fast_delivery()
    patched = Consumer.wait_first
    apply_fast_delivery()

    assert Consumer.wait_first is patched
    assert patched.__wrapped__ is ORIGINAL_WAIT_FIRST


async def _await(awaitable):
    return await awaitable
