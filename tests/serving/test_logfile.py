"""The SQLite log's marker file under concurrent first writes (a race CI once hit)."""

import threading

from causal_router.serving.logfile import LogFile


def test_concurrent_first_writes_of_the_marker_all_succeed(tmp_path):
    for attempt in range(20):
        log = LogFile(tmp_path / f"run{attempt}" / "decisions.db")
        log.path.parent.mkdir()
        start, errors = threading.Barrier(8), []

        def write(log=log, start=start, errors=errors):
            start.wait()
            try:
                log.write_marker()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=write) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors
        assert log.marker.is_file() and sorted(p.name for p in log.path.parent.iterdir()) == ["decisions.db.expected"]
