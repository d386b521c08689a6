"""The one-torch-thread fixture of the trainer test folders; their conftests import it (it is autouse there).

Kept out of tests/conftest.py on purpose: the rollout job takes torch's thread count as its default, and the
scoring tests run at the process's share of the cores (tests/conftest.py); only the folders that train tiny models
pin it to one.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: tiny models train faster and identically on a shared 2-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
