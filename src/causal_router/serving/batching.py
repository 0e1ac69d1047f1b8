"""Micro-batching: concurrent requests are handled together within a short queue window.

Embedding one prompt at a time wastes the encoder (and a commit per request wastes the disk):
:class:`MicroBatcher` collects the requests that arrive within ``window_s`` of the first one (up
to ``max_items`` prompts), hands them to one call of ``handler`` in a worker thread, and gives
each request its own slice of the answer. Under load the encoder sees batches as offline
embedding does; alone, a request waits at most ``window_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class MicroBatcher:
    """Batch concurrent calls of ``handler``.

    Parameters
    ----------
    handler : callable(list of items) -> list of results
        Runs in one worker thread (never two batches at once), one result per item, in order.
        If it raises, every request of that batch gets the exception.
    window_s : float
        How long the first request of a batch waits for company.
    max_items : int
        Most prompts per batch (a request's weight is ``size(item)``).
    size : callable(item) -> int
        How many prompts an item carries.
    """

    def __init__(self, handler, window_s: float = 0.005, max_items: int = 64, size=lambda item: 1):
        self.handler = handler
        self.window_s = float(window_s)
        self.max_items = int(max_items)
        self.size = size
        self._queue: asyncio.Queue | None = None
        self._task = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="causal-router-batch")
        self.batches = 0  # counters for the benchmark and tests
        self.items = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, item):
        """Queue one item; returns its result once its batch is done."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.submit before start")
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carry = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch, weight = [first], self.size(first[0])
            deadline = time.monotonic() + self.window_s
            while weight < self.max_items:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                if weight + self.size(nxt[0]) > self.max_items:
                    carry = nxt  # starts the next batch
                    break
                batch.append(nxt)
                weight += self.size(nxt[0])
            # requests cancelled while queued (client gone) need no work
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.handler, [item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            for (_, fut), res in zip(live, results):
                if not fut.done():
                    fut.set_result(res)
