"""A cheaper hand-over of fetched records from faust's consumer to the streams.

faust-streaming 0.15.3 delivers every fetched record through
``Service.wait_first(deliver(record), suspend_flow.wait())``, so that a
rebalance can interrupt a delivery that waits for room in a stream's buffer.
``wait_first`` wraps the delivery, the suspend wait and the service's stopped
and crashed events in four tasks and waits for the first of them, for every
record. A delivery to a buffer with room does not wait unless flow control
or faust's producer buffer stops it. The four tasks then cost more per
record than the rest of faust's hand-over. Without them,
a faust agent that only iterated its stream went from about 11,000 to
16,000-19,000 events per second on a 2-CPU machine (docs/benchmarks.md).

The fast path runs the delivery coroutine up to its first suspension, in a
copy of the current context as a task would, but in the consumer's own task.
A delivery that completes there returns at once. A delivery that suspends,
because a buffer is full or flow control stops it, is finished by a task in
the same context and goes through faust's own ``wait_first`` with the
suspend wait, so a rebalance interrupts it as before. A stop or crash that
is already signalled also takes faust's own path.

Contract: for the drain loop's call, ``wait_first`` returns faust's
WaitResults, whose winner is the delivery coroutine when it completed at once
and the task that finished it otherwise (the drain loop reads neither).
Every other call of it on a consumer is passed on unchanged.
NOTE: during its first step ``asyncio.current_task()`` is the consumer's
task, so a delivery must not start ``asyncio.timeout()`` or similar
per-task state before it first waits. faust-streaming 0.15.3's delivery
(the conductor's ``on_message``) uses none.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Coroutine
from typing import Any, Generator

from faust.transport.consumer import Consumer
from mode.services import WaitResults

# Set on the wrapper, so that a second call finds it applied.
_PATCHED_MARK = "_flyte_state_fast_delivery"


class ResumedCoroutine:
    """Awaitable that continues a coroutine which its caller stepped once, and which then suspended.

    ``suspended_on`` is what the coroutine's first step yielded: the future it
    waits for, or None for a bare yield such as ``asyncio.sleep(0)``. The
    awaitable yields it to the task that awaits it, then passes each wake-up,
    and each exception thrown in (a cancellation, say), on to the coroutine,
    as that task would have done had the coroutine been its own.
    """

    __slots__ = ("coroutine", "suspended_on")

    def __init__(self, coroutine: Coroutine, suspended_on: Any) -> None:
        self.coroutine = coroutine
        self.suspended_on = suspended_on

    def __await__(self) -> Generator[Any, None, Any]:
        coroutine = self.coroutine
        yielded = self.suspended_on
        while True:
            try:
                yield yielded
            except BaseException as thrown:
                try:
                    yielded = coroutine.throw(thrown)
                except StopIteration as finished:
                    return finished.value
            else:
                try:
                    yielded = coroutine.send(None)
                except StopIteration as finished:
                    return finished.value


async def _finish(resumed: ResumedCoroutine) -> Any:
    return await resumed


def is_delivery_call(coros: tuple, timeout: Any) -> bool:
    """Return whether a ``wait_first`` call has the drain loop's shape: a delivery coroutine and a suspend wait."""
    return (
        timeout is None
        and len(coros) == 2
        and asyncio.iscoroutine(coros[0])
        and asyncio.iscoroutine(coros[1])
        and coros[1].__qualname__.endswith(".wait")
    )


def make_fast_wait_first(original):
    """Return a ``wait_first`` for faust's Consumer that delivers without tasks when the delivery does not suspend."""

    async def wait_first(self, *coros, timeout=None):
        if not is_delivery_call(coros, timeout) or self.suspend_flow.is_set() or self.should_stop:
            return await original(self, *coros, timeout=timeout)

        delivery, suspend_wait = coros
        context = contextvars.copy_context()
        try:
            suspended_on = context.run(delivery.send, None)
        except StopIteration as finished:
            suspend_wait.close()
            return WaitResults([delivery], [finished.value], False)
        except BaseException:
            # faust's own wait_first also raises the delivery's exception.
            suspend_wait.close()
            raise

        # The delivery waits: finish it in a task that a rebalance can
        # interrupt, exactly as faust's own path would.
        finishing = asyncio.get_running_loop().create_task(
            _finish(ResumedCoroutine(delivery, suspended_on)), context=context
        )
        return await original(self, finishing, suspend_wait)

    return wait_first


def apply_fast_delivery() -> None:
    """Replace ``wait_first`` of faust's Consumer with the fast path, once per process."""
    original = Consumer.wait_first
    if getattr(original, _PATCHED_MARK, False):
        return
    wrapper = functools.wraps(original)(make_fast_wait_first(original))
    setattr(wrapper, _PATCHED_MARK, True)
    Consumer.wait_first = wrapper
