"""Inputs and accuracy rules shared by `gaincurate bench kernel` and the kernel tests, so both judge the same way.

`random_segment_inputs` draws hidden states and segment ids the way scoring produces them: token
norms spread over three decades, a shared direction per sample (real hidden states are far from
isotropic, which is what the metric measures), runs of ignored tokens.

`agreement_with_reference` compares a backend's output to the float64 reference:

* fp32 input: the largest relative error over (sample, segment) rows must be <= 1e-5, where a
  row's relative error is max_d |got - ref| / max_d |ref|. A row whose reference is all zero (an
  empty segment) must be exactly zero.
* bf16 / fp16 input (flash-attention's rule): max |got - ref| <= 2 * max |low - ref| + 1e-3, where
  `low` is the reference math carried out in the input's own dtype (normalise and add in bf16 or
  fp16, as a plain PyTorch user would).
* Every dtype, in addition: the fp32 row-relative rule above. The float64 reference holds the
  bf16/fp16 input values exactly, so a backend that normalises and accumulates in fp32 meets it
  for low-precision inputs too (measured: <= 8e-7), while bf16 accumulation would not (the bf16
  math is off by about 6e-3). The flash-attention rule alone is too loose to tell them apart.
* counts must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .reference import segment_unit_sums_reference

FP32_MAX_RELATIVE_ERROR = 1e-5
LOW_PRECISION_ATOL = 1e-3


def random_segment_inputs(
    batch: int,
    num_tokens: int,
    dim: int,
    dtype: torch.dtype,
    num_segments: int = 2,
    *,
    seed: int,
    layout: str = "runs",
    id_dtype: torch.dtype = torch.int64,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states [B, T, D] and segment ids [B, T], drawn on CPU from `seed`, then moved to `device`.

    layout "runs": runs of 1..T/4 tokens, each with a random id in -1..num_segments-1.
    layout "prompt": template (-1), context (1), template, question (0), template, then padding (-1)
    after a random length between T/2 and T, like a right-padded batch of chat prompts.
    """
    generator = torch.Generator().manual_seed(seed)
    shared_direction = torch.randn((batch, 1, dim), generator=generator)
    token_scale = 10 ** (3 * torch.rand((batch, num_tokens, 1), generator=generator) - 1)  # 0.1 .. 100
    hidden = (torch.randn((batch, num_tokens, dim), generator=generator) + shared_direction) * token_scale

    segment_ids = torch.full((batch, num_tokens), -1, dtype=torch.int64)
    for sample in range(batch):
        if layout == "runs":
            start = 0
            while start < num_tokens:
                length = int(torch.randint(1, max(2, num_tokens // 4 + 1), (1,), generator=generator))
                segment = int(torch.randint(-1, num_segments, (1,), generator=generator))
                segment_ids[sample, start : start + length] = segment
                start += length
        elif layout == "prompt":
            length = int(torch.randint(num_tokens // 2, num_tokens + 1, (1,), generator=generator))
            _fill_prompt(segment_ids[sample, : max(1, length)], num_segments)
        else:
            raise ValueError(f"unknown layout {layout!r}; use 'runs' or 'prompt'")
    return hidden.to(dtype).to(device), segment_ids.to(id_dtype).to(device)


def _fill_prompt(ids: torch.Tensor, num_segments: int) -> None:
    """Template | context | template | question | template, in proportions of a few-shot prompt."""
    length = len(ids)
    template = max(1, length // 32)
    question_start = template if num_segments < 2 else length // 2
    if num_segments >= 2:
        ids[template : question_start - template] = 1
    ids[question_start : length - template] = 0


@dataclass(frozen=True)
class Agreement:
    """How far a backend's output is from the float64 reference, and what the rule allows."""

    rule: str
    error: float
    bound: float
    counts_equal: bool
    row_relative_error: float  # the fp32 rule, checked for every dtype

    @property
    def ok(self) -> bool:
        return self.counts_equal and self.error <= self.bound and self.row_relative_error <= FP32_MAX_RELATIVE_ERROR


def max_row_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max over rows [..., D] of max |actual - expected| / max |expected|; empty rows must be exact."""
    actual = actual.to(torch.float64).cpu()
    expected = expected.to(torch.float64).cpu()
    difference = (actual - expected).abs().amax(dim=-1)
    scale = expected.abs().amax(dim=-1)
    # Written as `== 0` so that a NaN (an output the backend never wrote) counts as an error.
    exact = torch.where(difference == 0, 0.0, torch.inf)
    relative = torch.where(scale > 0, difference / scale, exact)
    return float(relative.max()) if relative.numel() else 0.0


def agreement_with_reference(
    hidden: torch.Tensor,
    segment_ids: torch.Tensor,
    num_segments: int,
    sums: torch.Tensor,
    counts: torch.Tensor,
) -> Agreement:
    """Judge (sums, counts) for these inputs by the rules in the module docstring."""
    expected_sums, expected_counts = segment_unit_sums_reference(hidden, segment_ids, num_segments)
    counts_equal = bool(torch.equal(counts.cpu(), expected_counts.cpu()))
    relative = max_row_relative_error(sums, expected_sums)
    if hidden.dtype == torch.float32:
        return Agreement("fp32 row-relative", relative, FP32_MAX_RELATIVE_ERROR, counts_equal, relative)
    low_sums, _ = segment_unit_sums_reference(hidden, segment_ids, num_segments, compute_dtype=hidden.dtype)
    error = _max_abs_difference(sums, expected_sums)
    bound = 2 * _max_abs_difference(low_sums, expected_sums) + LOW_PRECISION_ATOL
    return Agreement(f"2 x {hidden.dtype} reference error + atol", error, bound, counts_equal, relative)


def _max_abs_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    if actual.numel() == 0:
        return 0.0
    return float((actual.to(torch.float64) - expected.to(torch.float64)).abs().max())
