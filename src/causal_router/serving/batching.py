"""Micro-batching: concurrent requests are handled together within a short queue window.

Embedding one prompt at a time wastes the encoder (on CPU a lone prompt costs about three times
its share of a batch; and a commit per request wastes the disk): :class:`MicroBatcher` collects
the requests already queued plus those that arrive within a short window of the first one (up
to ``max_items`` prompts), hands them to one call of ``handler`` in a worker thread, and gives
each request its own slice of the answer.

The window adapts: it is ``window_s``, or a tenth of the last batch's handling time when that
is longer (at most ``max_window_s``); and it is 0 after :data:`LONE_BATCHES` batches in a row of
one item each, until a batch holds several again (requests that queue while a batch runs always
join the next one): an isolated request waits for no company that is not coming. Under load,
clients answered by one batch send their next requests together, and when a batch takes seconds,
waiting a few tens of milliseconds for all of them keeps batches full; on a fast machine the
window stays at ``window_s``.

Fair queuing: each client (``submit(item, client=...)``) has its own queue, and a batch takes the
clients' oldest items in turn (round robin, the first client served rotating from batch to batch)
up to ``max_items`` prompts and ``max_cost`` (prompt characters): a client that sends many or large
requests gets its share of each batch, never the whole queue. A client's own items keep their order.

Isolation: when a batch's handler raises and the batch holds several requests, each is retried on
its own, so one request's bad data fails that request alone.

Pipelining (``finish``): the handler may be split in two, ``handler`` (the work: encoding, scoring,
drawing) and ``finish`` (its commit), each in its own worker thread. While one batch commits (an
fsync, which holds no lock), the next batch's work runs; at most one commit is in flight and they run
in batch order; each request's result is handed over only once its batch's ``finish`` returned (the
decisions are committed before any response). A ``finish`` that raises for several requests retries
each on its own (``handler`` then ``finish``), as a failing ``handler`` does. A lone request with
nothing queued behind it and no commit in flight runs both stages in one call (one thread hop less).

Lone requests on the event loop (``busy``): when the last batches held one item each, nothing else is
queued or running, and no other request arrives within one pass of the event loop, a request runs
``handler`` then ``finish(..., wait=False)`` on the event loop itself: no thread wakes, about 1 ms less per
request on a 2-core VM (``benchmarks/serve_load.py``, concurrency 1). ``finish`` raises one of ``busy``
where it would wait (another writer holds the log, or its commit would travel the network): the commit
then runs in its thread as usual. Any load brings batches of several requests, and the threads back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

#: Batches in a row of one item after which a lone request no longer waits for company.
LONE_BATCHES = 2


class MicroBatcher:
    """Batch concurrent calls of ``handler``, fairly between clients.

    Parameters
    ----------
    handler : callable(list of items) -> list of results
        Runs in one worker thread (never two batches at once), one result per item, in order.
        If it raises for a batch of several items, each item is retried alone; the exception of an
        item that fails alone is that item's.
    window_s : float
        How long the first request of a batch waits for company.
    max_items : int
        Most prompts per batch (a request's weight is ``size(item)``).
    max_window_s : float or None
        Longest adaptive window (None: 0.1 s, or ``window_s`` when that is longer).
    size : callable(item) -> int
        How many prompts an item carries.
    cost : callable(item) -> int
        An item's work (e.g. prompt characters), bounded per batch by ``max_cost`` (None: unbounded).
    finish : callable(handler's return value, wait=True) -> list of results, or None
        The batch's second stage (a commit), run in its own thread while the next batch's ``handler``
        runs; None: ``handler`` returns the results.
    busy : exception type, tuple of them, or None
        What ``finish(..., wait=False)`` raises instead of waiting, having done nothing; None: no request
        runs on the event loop.
    peek : callable(handler's return value) -> list of results, or None
        The results before ``finish`` ran: ``submit(..., early=True)`` then hands a lone request its
        result while its commit runs (the gateway overlaps the commit with the upstream call).
    """

    def __init__(self, handler, window_s: float = 0.005, max_items: int = 64, size=lambda item: 1,
                 max_window_s: float | None = None, cost=lambda item: 0, max_cost: int | None = None,
                 finish=None, busy=None, peek=None):
        self.handler = handler
        self.finish = finish
        self.peek = peek if finish is not None else None
        self.busy = busy if finish is not None else None
        self._running = False  # a batch in the worker thread
        self._committer = None if finish is None else ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="causal-router-commit")
        self._committing: asyncio.Future | None = None  # the previous batch's finish (at most one in flight)
        self.window_s = float(window_s)
        self.max_window_s = max(self.window_s, 0.1 if max_window_s is None else float(max_window_s))
        self._last_seconds = 0.0
        self._lone = 0  # batches in a row of one item
        self.max_items = int(max_items)
        self.max_cost = None if max_cost is None else int(max_cost)
        self.size = size
        self.cost = cost
        self._queues: dict = {}  # client -> deque of (item, future)
        self._order: deque = deque()  # clients with queued items, in serving order
        self._weight = self._cost = 0  # of the queued items (kept as they come and go: checked on every arrival)
        self._arrived: asyncio.Event | None = None
        self._task = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="causal-router-batch")
        self.batches = 0  # counters for the benchmark and tests
        self.items = 0

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._committing is not None:  # a batch being committed: its requests get their answers
            await asyncio.gather(self._committing, return_exceptions=True)
            self._committing = None
        self._executor.shutdown(wait=True)
        if self._committer is not None:
            self._committer.shutdown(wait=True)

    async def submit(self, item, client=None, early: bool = False):
        """Queue one item of ``client``; returns its result once its batch is done. ``early``: returns
        ``(result, committed)``, ``committed`` an awaitable done once the result's batch is committed
        (raising what the commit raised); a lone request (with ``peek``) gets its result before that."""
        if self._arrived is None:
            raise RuntimeError("MicroBatcher.submit before start")
        fut = asyncio.get_running_loop().create_future()
        if client not in self._queues:
            self._queues[client] = deque()
            self._order.append(client)
        self._queues[client].append((item, fut))
        self._weight += self.size(item)
        self._cost += self.cost(item)
        if self._alone(fut):
            try:
                await asyncio.sleep(0)  # one pass of the loop: requests read in the same pass make a batch instead
            except asyncio.CancelledError:
                fut.cancel()  # the client left: no batch takes it
                raise
            if self._alone(fut):
                self._take()
                result, committed = await self._on_loop(item, early and self.peek is not None)
                return (result, committed or _done()) if early else result
        self._arrived.set()
        result = await fut
        return (result, _done()) if early else result

    def _alone(self, fut) -> bool:
        """``fut``'s request is the only one queued, at low load, with nothing running or committing."""
        if self.busy is None or self._lone < LONE_BATCHES or self._running or len(self._queues) != 1:
            return False
        (q,) = self._queues.values()
        return len(q) == 1 and q[0][1] is fut and (self._committing is None or self._committing.done())

    async def _on_loop(self, item, early: bool = False) -> tuple:
        """One lone request's work and commit on the event loop (its commit in the thread where it would
        wait). ``early``: the commit runs in the commit thread, the result handed over meanwhile (in order:
        the next batch's commit waits for it). Returns (result, the awaitable commit or None: done)."""
        self._lone += 1
        started = time.monotonic()
        try:
            pending = self.handler([item])
            committed = None
            if early:
                results, committed = self.peek(pending), asyncio.shield(self._commit_in_thread(pending))
            else:
                try:
                    results = self.finish(pending, wait=False)
                except self.busy:
                    results = await asyncio.shield(self._commit_in_thread(pending))
        finally:
            self._last_seconds = time.monotonic() - started
        self.batches += 1
        self.items += 1
        return results[0], committed

    def _commit_in_thread(self, pending) -> asyncio.Future:
        """``finish(pending)`` in the commit thread, as the one commit in flight."""
        self._committing = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(
            self._committer, self.finish, pending))
        return self._committing

    def _full(self) -> bool:
        return self._weight >= self.max_items or (self.max_cost is not None and self._cost >= self.max_cost)

    def _take(self) -> list:
        """One batch: the clients' oldest items in turn, within the limits (the first item always fits)."""
        batch, weight, cost, blocked = [], 0, 0, set()
        while True:
            added = False
            for client in list(self._order):
                q = self._queues.get(client)
                if client in blocked or not q:
                    continue
                item, fut = q[0]
                w, c = self.size(item), self.cost(item)
                if batch and (weight + w > self.max_items or (self.max_cost is not None and cost + c > self.max_cost)):
                    blocked.add(client)  # its next item waits: a client's items keep their order
                    continue
                q.popleft()
                batch.append((item, fut))
                weight, cost, added = weight + w, cost + c, True
            if not added:
                break
        self._weight -= weight
        self._cost -= cost
        for client in [c for c, q in self._queues.items() if not q]:
            del self._queues[client]
            self._order.remove(client)
        self._order.rotate(-1)  # the next batch starts with the next client
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queues:
                self._arrived.clear()
                await self._arrived.wait()
            window = 0.0 if self._lone >= LONE_BATCHES else min(max(self.window_s, 0.1 * self._last_seconds),
                                                                 self.max_window_s)
            deadline = time.monotonic() + window
            while not self._full():  # what is queued already joins, window or not
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout)
                except TimeoutError:
                    break
            # requests cancelled while queued (client gone) need no work
            live = [(item, fut) for item, fut in self._take() if not fut.done()]
            if not live:
                continue
            self._lone = self._lone + 1 if len(live) == 1 else 0
            started = time.monotonic()
            self._running = True
            # a lone request with nothing queued behind it: its work and its commit in one thread hop
            whole = self.finish is not None and len(live) == 1 and not self._queues and (
                self._committing is None or self._committing.done())
            try:
                results = await loop.run_in_executor(self._executor, self._whole if whole else self.handler,
                                                     [item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - retried one by one, or handed to the request
                await self._failed(live, exc, "a batch")
                continue
            finally:
                self._last_seconds = time.monotonic() - started
                self._running = False
            if self.finish is None or whole:
                self._deliver(live, results)
                continue
            if self._committing is not None:  # one commit in flight, in batch order (wait: never cancels it)
                await asyncio.wait({self._committing})
            self._committing = asyncio.ensure_future(self._finish(live, results))

    def _deliver(self, live, results) -> None:
        self.batches += 1
        self.items += len(live)
        for (_, fut), res in zip(live, results):
            if not fut.done():
                fut.set_result(res)

    async def _finish(self, live, pending) -> None:
        """Commit one prepared batch (the ``finish`` thread), then hand each request its result."""
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._committer, self.finish, pending)
        except Exception as exc:  # noqa: BLE001 - retried one by one, or handed to the request
            await self._failed(live, exc, "committing a batch")
            return
        self._deliver(live, results)

    async def _failed(self, live, exc: Exception, what: str) -> None:
        """A failed batch: one request gets the exception; several are retried each on its own."""
        if len(live) == 1:
            live[0][1].done() or live[0][1].set_exception(exc)
            return
        log.warning("%s of %d requests failed (%s): retrying each on its own", what, len(live), exc)
        await self._one_by_one(live)

    def _whole(self, items: list) -> list:
        """``handler`` then ``finish``: one item's whole work (the retries)."""
        out = self.handler(items)
        return out if self.finish is None else self.finish(out)

    async def _one_by_one(self, live) -> None:
        loop = asyncio.get_running_loop()
        for item, fut in live:
            if fut.done():
                continue
            try:
                (res,) = await loop.run_in_executor(self._executor, self._whole, [item])
            except Exception as exc:  # noqa: BLE001 - this request's own failure
                fut.done() or fut.set_exception(exc)
            else:
                self.batches += 1
                self.items += 1
                fut.done() or fut.set_result(res)


def _done() -> asyncio.Future:
    """An awaitable already done (a result whose batch is committed)."""
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut
