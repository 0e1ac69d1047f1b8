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
