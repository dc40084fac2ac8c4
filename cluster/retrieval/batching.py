"""Adaptive batching without a timer: concurrent calls share one batch only when they would have
waited anyway.

A call that arrives while fewer than ``max_in_flight`` batches run starts a batch at once, with
whatever else is queued: at low load every call is its own batch and waits for nothing. A call
that arrives while every slot is busy queues, and the next batch to start takes the whole queue
(up to ``max_batch``), so batches grow with the load by themselves. Nothing sleeps for more
calls to come: a batching timer (Serve's ``batch_wait_timeout_s``) adds its wait to every
request of a quiet service, the one case where batching has nothing to gain.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """``handle(items)`` answers a batch with one result per item, in order; it runs on the
    event loop of the callers of ``submit``."""

    def __init__(
        self,
        handle: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        max_batch: int = 64,
        max_in_flight: int = 2,
    ):
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self.handle = handle
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.running = 0
        self.batches = 0
        self.items = 0
        self._queue: list[tuple[Item, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()  # referenced until done: the loop keeps only weak ones

    async def submit(self, item: Item) -> Result:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while self._queue and self.running < self.max_in_flight:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self.running += 1
            self.batches += 1
            self.items += len(batch)
            task = asyncio.ensure_future(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = await self.handle([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} was answered with {len(results)} results")
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(batch, results):
                if not future.done():  # its caller may have gone (a client that hung up)
                    future.set_result(result)
        finally:
            self.running -= 1
            self._start_batches()
