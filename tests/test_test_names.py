"""Test modules outside packages are imported by their basename (pytest's rootdir-based import), so
two with the same name in different folders stop a full run at collection; targeted runs miss it."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parent


def test_test_module_basenames_are_unique_outside_packages():
    loose = [p for p in TESTS.rglob("test_*.py") if not (p.parent / "__init__.py").is_file()]
    twice = sorted(name for name, n in Counter(p.name for p in loose).items() if n > 1)
    assert not twice, f"rename one of each: {twice}"
