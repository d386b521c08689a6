"""Fixtures for the kernel tests.

Two processes run these tests, because `@triton.jit` reads TRITON_INTERPRET once, when the kernel
module is imported:

    pytest -m "not triton"                            reference, torch backend, dispatch errors
    TRITON_INTERPRET=1 pytest -m triton tests/kernels  the Triton kernel in the CPU interpreter
    pytest -m gpu tests/kernels                       the compiled kernel on CUDA (no TRITON_INTERPRET)

Nothing here sets TRITON_INTERPRET or imports Triton, so collecting this folder in the normal run
changes nothing for the other tests in that process.
"""

from __future__ import annotations

import pytest
import torch

from gaincurate.kernels.launch import interpret_requested


@pytest.fixture(autouse=True)
def unwritten_outputs_are_poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.empty returns NaN (floats) or the most negative integer, never leftover memory.

    The backends allocate their outputs and workspaces with torch.empty, so an element a kernel
    forgets to write shows up as NaN (or a negative count) and fails the comparison (FLA does this).
    """
    original_empty = torch.empty

    def poisoned_empty(*args, **kwargs):
        tensor = original_empty(*args, **kwargs)
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
        elif tensor.dtype != torch.bool and not tensor.is_complex():
            tensor.fill_(torch.iinfo(tensor.dtype).min)
        return tensor

    monkeypatch.setattr(torch, "empty", poisoned_empty)


@pytest.fixture()
def interpreter() -> None:
    """Skip unless the Triton interpreter was switched on for this process."""
    if not interpret_requested():
        pytest.skip(
            "Triton kernel tests on CPU need the interpreter, switched on before Triton is imported: "
            "TRITON_INTERPRET=1 pytest -m triton tests/kernels"
        )


@pytest.fixture()
def cuda() -> None:
    """Skip unless a CUDA device is present and the kernels are compiled (TRITON_INTERPRET unset)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if interpret_requested():
        pytest.skip("GPU tests check the compiled kernel; run them without TRITON_INTERPRET: pytest -m gpu")
