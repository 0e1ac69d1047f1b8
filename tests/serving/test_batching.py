"""Micro-batching: requests arriving within the window share one handler call; limits and errors hold."""

import asyncio

import pytest

from causal_router.serving.batching import MicroBatcher


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_one_call_and_get_their_own_answers():
    calls = []

    def handler(items):
        calls.append(list(items))
        return [x * 10 for x in items]

    async def main():
        b = MicroBatcher(handler, window_s=0.2, max_items=100)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(i) for i in range(12)))
        finally:
            await b.stop()

    assert run(main()) == [i * 10 for i in range(12)]
    assert calls == [list(range(12))]


def test_batches_respect_the_prompt_limit():
    calls = []

    def handler(items):
        calls.append(sum(len(x) for x in items))
        return [len(x) for x in items]

    async def main():
        b = MicroBatcher(handler, window_s=0.2, max_items=5, size=len)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(["p"] * k) for k in (2, 2, 2, 3, 1)))
        finally:
            await b.stop()

    assert run(main()) == [2, 2, 2, 3, 1]
    assert max(calls) <= 5 and sum(calls) == 10 and len(calls) >= 2


def test_a_lone_request_waits_at_most_the_window():
    async def main():
        b = MicroBatcher(lambda items: items, window_s=0.05)
        await b.start()
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await b.submit("x")
            return loop.time() - t0
        finally:
            await b.stop()

    assert run(main()) < 1.0


def test_a_failing_batch_fails_each_of_its_requests():
    def handler(items):
        raise RuntimeError("encoder broke")

    async def main():
        b = MicroBatcher(handler, window_s=0.05)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
        finally:
            await b.stop()

    out = run(main())
    assert len(out) == 3 and all(isinstance(e, RuntimeError) for e in out)


def test_submit_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="before start"):
        run(MicroBatcher(lambda items: items).submit(1))


def test_requests_queued_during_a_batch_all_join_the_next_one():
    """While one batch is handled, the next requests queue up: they form the next batch together,
    however short the window."""
    import threading

    calls, gate = [], threading.Event()

    def handler(items):
        calls.append(len(items))
        if len(calls) == 1:
            gate.wait(5)  # a slow first batch
        return items

    async def main():
        b = MicroBatcher(handler, window_s=0.0, max_items=100)
        await b.start()
        try:
            first = asyncio.ensure_future(b.submit(0))
            await asyncio.sleep(0.05)  # the first batch is running
            rest = [asyncio.ensure_future(b.submit(i)) for i in range(1, 21)]
            await asyncio.sleep(0.05)
            gate.set()
            return await asyncio.gather(first, *rest)
        finally:
            await b.stop()

    assert run(main()) == list(range(21))
    assert calls == [1, 20]


def test_the_window_grows_with_slow_batches_but_stays_bounded():
    import time as _time

    def slow(items):
        _time.sleep(1.0)
        return items

    async def main():
        b = MicroBatcher(slow, window_s=0.001, max_window_s=0.5)
        await b.start()
        try:
            await b.submit(0)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            late = asyncio.ensure_future(b.submit(1))
            await asyncio.sleep(0.02)  # well within the grown window (a tenth of 1 s)
            await asyncio.gather(late, b.submit(2))
            return b.batches, loop.time() - t0
        finally:
            await b.stop()

    batches, took = run(main())
    assert batches == 2  # 1 and 2 shared the second batch
    assert took < 1.0 + 0.1 + 0.5  # one slow batch, the window, slack


def test_isolated_requests_stop_waiting_for_company_until_requests_arrive_together():
    calls = []

    def handler(items):
        calls.append(len(items))
        return items

    async def main():
        b = MicroBatcher(handler, window_s=0.3)
        await b.start()
        try:
            loop, waits = asyncio.get_running_loop(), []
            for i in range(4):  # one at a time: the first two wait the window, then no more
                t0 = loop.time()
                await b.submit(i)
                waits.append(loop.time() - t0)
            # two together: the lone rule lets the first go alone; then the window is back
            await asyncio.gather(b.submit("a"), b.submit("b"), b.submit("c"))
            t0 = loop.time()
            await b.submit("after")
            waits.append(loop.time() - t0)
            return waits
        finally:
            await b.stop()

    waits = run(main())
    assert min(waits[:2]) >= 0.25 and max(waits[2:4]) < 0.15
    assert waits[4] >= 0.25 and sum(calls) == 8


def test_a_batch_commits_while_the_next_batch_is_prepared_and_answers_only_after_its_commit():
    """With ``finish`` (the commit), batch 2's handler runs while batch 1's finish is under way; a request's
    answer comes only once its own batch's finish returned; finishes run one at a time, in batch order."""
    import threading

    second_started, events = threading.Event(), []

    def prepare(items):
        if "b" in items:
            second_started.set()
        events.append(("prepare", tuple(items)))
        return list(items)

    def commit(prepared):
        if "a" in prepared:  # batch 1's commit waits (bounded) for batch 2's work to start
            assert second_started.wait(5), "batch 2 was not prepared while batch 1 committed"
        events.append(("commit", tuple(prepared)))
        return [x.upper() for x in prepared]

    async def main():
        b = MicroBatcher(prepare, window_s=0.0, finish=commit)
        await b.start()
        try:
            first = [asyncio.ensure_future(b.submit(x)) for x in ("a", "a2")]
            await asyncio.sleep(0.05)  # batch 1 is prepared, its commit waits
            assert not any(f.done() for f in first)  # no answer before its batch's commit
            later = [asyncio.ensure_future(b.submit(x)) for x in ("b", "c")]
            return await asyncio.gather(*first, *later), b.items
        finally:
            await b.stop()

    out, items = run(main())
    assert out == ["A", "A2", "B", "C"] and items == 4
    assert events == [("prepare", ("a", "a2")), ("prepare", ("b", "c")), ("commit", ("a", "a2")),
                      ("commit", ("b", "c"))]


def test_a_lone_request_with_nothing_queued_runs_both_stages_in_one_thread_hop():
    import threading

    threads = {}

    def prepare(items):
        threads["prepare"] = threading.current_thread().name
        return items

    def commit(prepared):
        threads["commit"] = threading.current_thread().name
        return prepared

    async def main():
        b = MicroBatcher(prepare, window_s=0.0, finish=commit)
        await b.start()
        try:
            return await b.submit("x")
        finally:
            await b.stop()

    assert run(main()) == "x"
    assert threads["prepare"] == threads["commit"] and threads["commit"].startswith("causal-router-batch")


def test_a_failing_commit_retries_each_request_alone():
    """A finish that raises for several requests: each is prepared and committed again on its own, so one
    request's bad data fails that request alone (as a failing handler does)."""
    calls = []

    def prepare(items):
        return list(items)

    def commit(prepared):
        calls.append(list(prepared))
        if "bad" in prepared:
            raise ValueError("cannot store 'bad'")
        return [x.upper() for x in prepared]

    async def main():
        b = MicroBatcher(prepare, window_s=0.2, finish=commit)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(x) for x in ("a", "bad", "c")), return_exceptions=True)
        finally:
            await b.stop()

    out = run(main())
    assert out[0] == "A" and out[2] == "C" and isinstance(out[1], ValueError)
    assert calls[0] == ["a", "bad", "c"] and ["a"] in calls and ["bad"] in calls and ["c"] in calls
