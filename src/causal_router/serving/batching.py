"""Micro-batching: concurrent requests are handled together within a short queue window.

Embedding one prompt at a time wastes the encoder (on CPU a lone prompt costs about three times
its share of a batch; and a commit per request wastes the disk): :class:`MicroBatcher` collects
the requests already queued plus those that arrive within a short window of the first one (up
to ``max_items`` prompts), hands them to one call of ``handler`` in a worker thread, and gives
each request its own slice of the answer.

The window adapts: it is ``window_s``, or a tenth of the last batch's handling time when that
is longer (at most ``max_window_s``). Under load, clients answered by one batch send their next
requests together, and when a batch takes seconds, waiting a few tens of milliseconds for all
of them keeps batches full; on a fast machine the window stays at ``window_s``.
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
    max_window_s : float or None
        Longest adaptive window (None: 0.1 s, or ``window_s`` when that is longer).
    size : callable(item) -> int
        How many prompts an item carries.
    """

    def __init__(self, handler, window_s: float = 0.005, max_items: int = 64, size=lambda item: 1,
                 max_window_s: float | None = None):
        self.handler = handler
        self.window_s = float(window_s)
        self.max_window_s = max(self.window_s, 0.1 if max_window_s is None else float(max_window_s))
        self._last_seconds = 0.0
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
            window = min(max(self.window_s, 0.1 * self._last_seconds), self.max_window_s)
            deadline = time.monotonic() + window
            while weight < self.max_items:
                if not self._queue.empty():  # what is queued already joins, window or not
                    nxt = self._queue.get_nowait()
                else:
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
            started = time.monotonic()
            try:
                results = await loop.run_in_executor(self._executor, self.handler, [item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            finally:
                self._last_seconds = time.monotonic() - started
            self.batches += 1
            self.items += len(live)
            for (_, fut), res in zip(live, results):
                if not fut.done():
                    fut.set_result(res)
