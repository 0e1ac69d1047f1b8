import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks train several times faster on one thread (and do not fight other processes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
