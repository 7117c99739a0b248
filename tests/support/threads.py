"""Tiny models run fastest single-threaded; on a busy 2-core machine two OpenMP threads
spin-wait and make these tests several times slower. Restored afterwards."""
import contextlib

import pytest
import torch


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield
