"""Backend choice, impossible requests and input checks; run in the normal process (no Triton needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gaincurate.kernels import BackendError, resolve_backend, segment_unit_sums
from gaincurate.kernels.accuracy import random_segment_inputs
from gaincurate.kernels.launch import MAX_BATCH, MAX_DIM, check_shape, launch_config, next_power_of_two
from gaincurate.kernels.torch_impl import segment_unit_sums_torch


def test_torch_and_auto_on_cpu_pick_torch():
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("torch", torch.device("cuda")) == "torch"


def test_auto_on_cpu_is_the_torch_backend_bit_for_bit():
    hidden, segment_ids = random_segment_inputs(3, 50, 64, torch.bfloat16, seed=5)

    sums, counts = segment_unit_sums(hidden, segment_ids, 2)

    expected_sums, expected_counts = segment_unit_sums_torch(hidden, segment_ids, 2)
    assert torch.equal(sums, expected_sums) and torch.equal(counts, expected_counts)


def test_triton_on_cpu_without_the_interpreter_names_device_and_fix(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)

    with pytest.raises(BackendError) as raised:
        resolve_backend("triton", "cpu")

    message = str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert "\n" not in message
    assert "device 'cpu'" in message and "backend='torch'" in message and "TRITON_INTERPRET=1" in message


def test_triton_on_another_device_names_it():
    with pytest.raises(BackendError, match="device 'meta'.*backend='torch'"):
        resolve_backend("triton", "meta")


def test_an_unknown_backend_lists_the_choices():
    with pytest.raises(BackendError, match="'cuda'.*auto, triton, torch"):
        resolve_backend("cuda", "cpu")


def good_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, 5, 8), torch.zeros(2, 5, dtype=torch.int64)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, s, n: (h[0], s, n), r"\[B, T, D\], got shape \(5, 8\)"),
        (lambda h, s, n: (h.double(), s, n), "got torch.float64"),
        (lambda h, s, n: (h[..., ::2], s, n), "contiguous last dim"),
        (lambda h, s, n: (h, s[:, :4], n), r"\[B, T\] = \(2, 5\), got shape \(2, 4\)"),
        (lambda h, s, n: (h, s.to(torch.uint8), n), "got torch.uint8"),
        (lambda h, s, n: (h, s.float(), n), "got torch.float32"),
        (lambda h, s, n: (h, s, 0), "1..8, got 0"),
        (lambda h, s, n: (h, s, 9), "1..8, got 9"),
        (lambda h, s, n: (h, s, 2.0), "must be an int, got 2.0"),
        (lambda h, s, n: (h, s.index_fill(1, torch.tensor([3]), 2), n), r"-1 or in 0\.\.1, found 2"),
        (lambda h, s, n: (h, s.index_fill(1, torch.tensor([3]), -2), n), r"-1 or in 0\.\.1, found -2"),
        (lambda h, s, n: (h, s.to("meta"), n), "segment_ids are on meta"),
    ],
    ids=[
        "2d-hidden",
        "float64",
        "strided-last-dim",
        "ids-shape",
        "uint8-ids",
        "float-ids",
        "zero-segments",
        "nine-segments",
        "float-count",
        "id-too-big",
        "id-below-minus-one",
        "ids-elsewhere",
    ],
)
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_bad_inputs_name_the_bad_value(change, message, backend):
    hidden, segment_ids, num_segments = change(*good_inputs(), 2)

    with pytest.raises(ValueError, match=message):
        segment_unit_sums(hidden, segment_ids, num_segments, backend=backend)


def test_launch_configs_hold_every_hidden_size_and_segment_count():
    for dim in [1, 2, 3, 63, 64, 96, 576, 896, 1000, 1536, 2048, 3584, 5120, 8192, MAX_DIM]:
        for num_segments in range(1, 9):
            for interpret in (False, True):
                config = launch_config(dim, num_segments, interpret=interpret)
                assert config.block_d >= dim and config.block_d == next_power_of_two(dim)
                assert 1 <= config.num_warps <= 32
                assert config.chunk_t % config.block_t == 0
                assert config.chunk_t >= config.block_t


def test_oversized_shapes_name_the_value():
    with pytest.raises(BackendError, match=f"D={MAX_DIM + 1}"):
        launch_config(MAX_DIM + 1, 2)
    with pytest.raises(BackendError, match=f"B={MAX_BATCH + 1}"):
        check_shape(MAX_BATCH + 1, 896, 2)
    with pytest.raises(BackendError, match="num_segments=9"):
        launch_config(896, 9)


def run_python(code: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(pythonpath), environment.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


WITHOUT_TRITON_CHECKS = """
    import torch
    import gaincurate, gaincurate.kernels
    from gaincurate.errors import BackendError
    from gaincurate.kernels import BackendError, resolve_backend, segment_unit_sums

    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("auto", "cuda") == "torch"  # falls back, with a logged warning
    sums, counts = segment_unit_sums(torch.randn(2, 3, 8), torch.zeros(2, 3, dtype=torch.int8), 2)
    assert counts.tolist() == [[3, 0], [3, 0]]
    for device in ("cuda", "cpu"):
        try:
            resolve_backend("triton", device)
        except BackendError as error:
            print(error)
        else:
            raise AssertionError("no BackendError for " + device)
"""


def test_missing_triton_leaves_the_torch_backend_working():
    result = run_python("import sys; sys.modules['triton'] = None\n" + textwrap.dedent(WITHOUT_TRITON_CHECKS))

    assert result.returncode == 0, result.stderr
    cuda_message = result.stdout.splitlines()[0]
    assert "device 'cuda'" in cuda_message and "Triton failed to import" in cuda_message
    assert "pip install 'gaincurate[triton]'" in cuda_message


def test_broken_triton_leaves_the_torch_backend_working(tmp_path):
    (tmp_path / "triton").mkdir()
    (tmp_path / "triton" / "__init__.py").write_text("raise RuntimeError('libtriton.so: undefined symbol')\n")

    result = run_python(WITHOUT_TRITON_CHECKS, pythonpath=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "RuntimeError: libtriton.so: undefined symbol" in result.stdout.splitlines()[0]


def test_importing_the_kernels_package_does_not_import_triton():
    result = run_python(
        """
        import sys, torch
        from gaincurate.kernels import BackendError, resolve_backend, segment_unit_sums
        segment_unit_sums(torch.randn(1, 2, 8), torch.zeros(1, 2, dtype=torch.int64), 1)
        resolve_backend("auto", "cpu")
        assert "triton" not in sys.modules, "triton was imported"
        """
    )

    assert result.returncode == 0, result.stderr
