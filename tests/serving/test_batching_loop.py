"""Lone requests at low load run on the event loop (``MicroBatcher(busy=...)``): no thread hop, the commit
back in its thread where it would wait, and requests that arrive together still make one batch."""

import asyncio
import threading

from causal_router.serving.batching import LONE_BATCHES, MicroBatcher


class Busy(Exception):
    pass


def _stages(log: list, busy_once: list | None = None):
    def prepare(items):
        log.append(("prepare", threading.current_thread().name, tuple(items)))
        return list(items)

    def commit(prepared, wait=True):
        if not wait and busy_once:
            busy_once.pop()
            raise Busy
        log.append(("commit", threading.current_thread().name, tuple(prepared), wait))
        return [x.upper() for x in prepared]

    return prepare, commit


def test_lone_requests_run_on_the_event_loop_after_a_few_lone_batches():
    log = []
    prepare, commit = _stages(log)

    async def main():
        b = MicroBatcher(prepare, window_s=0.0, finish=commit, busy=Busy)
        await b.start()
        try:
            return [await b.submit(x) for x in "abcde"], b.batches, b.items
        finally:
            await b.stop()

    out, batches, items = asyncio.run(main())
    assert out == list("ABCDE") and batches == 5 and items == 5
    loop_thread = threading.main_thread().name
    first = [t for stage, t, *_ in log[: 2 * LONE_BATCHES]]
    assert all(t.startswith("causal-router-batch") for t in first)  # before: the worker thread
    later = log[2 * LONE_BATCHES:]
    assert later and all(t == loop_thread for _, t, *_ in later)
    assert all(entry[3] is False for entry in later if entry[0] == "commit")  # never waiting on the loop


def test_a_commit_that_would_wait_runs_in_the_commit_thread():
    log, busy = [], [True]
    prepare, commit = _stages(log, busy)

    async def main():
        b = MicroBatcher(prepare, window_s=0.0, finish=commit, busy=Busy)
        await b.start()
        try:
            return [await b.submit(x) for x in "abcd"]
        finally:
            await b.stop()

    assert asyncio.run(main()) == list("ABCD")
    commits = [e for e in log if e[0] == "commit"]
    waited = [e for e in commits[LONE_BATCHES:] if e[3] is True]
    assert len(waited) == 1 and waited[0][1].startswith("causal-router-commit") and not busy


def test_requests_arriving_together_still_make_one_batch():
    log = []
    prepare, commit = _stages(log)

    async def main():
        b = MicroBatcher(prepare, window_s=0.0, finish=commit, busy=Busy)
        await b.start()
        try:
            for x in "abc":  # lone batches: the next lone request would run on the loop
                await b.submit(x)
            return await asyncio.gather(*(b.submit(x) for x in "xyz"))
        finally:
            await b.stop()

    assert asyncio.run(main()) == list("XYZ")
    assert ("x", "y", "z") in [e[2] for e in log if e[0] == "prepare"]


def test_a_failing_request_on_the_loop_fails_alone():
    def prepare(items):
        if "bad" in items:
            raise ValueError("bad text")
        return list(items)

    async def main():
        b = MicroBatcher(prepare, window_s=0.0, finish=lambda p, wait=True: p, busy=Busy)
        await b.start()
        try:
            out = [await b.submit(x) for x in "abc"]
            try:
                await b.submit("bad")
            except ValueError as err:
                out.append(str(err))
            out.append(await b.submit("d"))
            return out
        finally:
            await b.stop()

    assert asyncio.run(main()) == ["a", "b", "c", "bad text", "d"]


def test_a_request_cancelled_while_it_waits_for_company_is_never_handled():
    log = []
    prepare, commit = _stages(log)

    async def main():
        b = MicroBatcher(prepare, window_s=0.0, finish=commit, busy=Busy)
        await b.start()
        try:
            for x in "abc":
                await b.submit(x)
            gone = asyncio.ensure_future(b.submit("gone"))
            await asyncio.sleep(0)  # it is queued, waiting one pass of the loop
            gone.cancel()
            return await b.submit("d"), await b.submit("e")
        finally:
            await b.stop()

    assert asyncio.run(main()) == ("D", "E")
    assert all("gone" not in e[2] for e in log)


def test_early_hands_a_lone_request_its_result_while_its_commit_runs_and_reports_the_commit():
    gate, log = threading.Event(), []
    failing = {"d"}

    def prepare(items):
        return list(items), [x.upper() for x in items]

    def commit(prepared, wait=True):
        gate.wait(10)  # the commit thread holds the commit until the test lets it go
        if failing & set(prepared[0]):
            raise OSError("disk full")
        log.append(prepared[0][0])
        return prepared[1]

    async def main():
        b = MicroBatcher(prepare, window_s=0.0, finish=commit, busy=Busy, peek=lambda p: p[1])
        await b.start()
        try:
            gate.set()
            for x in "abc":  # lone batches: the next lone request runs on the loop
                res, committed = await b.submit(x, early=True)
                await committed
                assert res == x.upper()
            gate.clear()
            res, committed = await b.submit("c", early=True)
            assert res == "C" and log == list("abc")  # the result came first: its commit is still held
            gate.set()
            await committed
            assert log == list("abcc")
            res, committed = await b.submit("d", early=True)
            try:
                await committed
            except OSError as exc:
                return res, str(exc)
        finally:
            await b.stop()

    assert asyncio.run(main()) == ("D", "disk full")  # a failed commit reaches whoever awaits it
