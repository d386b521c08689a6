"""The compute engine: encoded prompts -> truncated forward -> segment sums -> (intra, inter, score).

Prompts are packed into batches of rows of one token length, at most `batch_tokens` tokens, widest first,
so no row is padded (`pack_batches`). The leading
tokens that every prompt shares (system prompt, few-shot turns, role headers) run once: each batch
continues from their key/value cache and adds their segment sums, since in a causal model their hidden
states do not depend on the question.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaincurate.metrics import concentration
from gaincurate.model import SiteForward
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.prompts import NUM_SEGMENTS, QUESTION, EncodedPrompt, PromptEncoder
from gaincurate.scoring.config import ScoreConfig, resolve_batch_tokens


@dataclass
class BatchStats:
    """Work counters across batches, for the manifest's timings."""

    tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    forward_seconds: float = 0.0
    prefix_tokens_reused: int = 0
    first_batch_seconds: float = 0.0  # kernel set-up and the shared prefix: a fixed cost, reported apart
    first_batch_tokens: int = 0


WIDTH_STEP = 1  # padded widths are multiples of this: 1 pads nothing


def padded_width(length: int) -> int:
    """The width a row of `length` tokens is padded to: a function of its own length only."""
    return -(-length // WIDTH_STEP) * WIDTH_STEP


def pack_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Group row indices into batches of rows of one padded width, widest first, at most `batch_tokens` tokens.

    A row's width is `padded_width` of its own length, never its batch companions': padded to another
    width, a row's floats change in the last bits (attention and matmuls reduce over the width; bfloat16
    scores moved by up to 0.0013). How many rows share its batch can still move its last bits, since BLAS
    picks its kernel by the product's shape (docs/shards.md, "What the scores promise": within
    `SCORE_TOLERANCE`). A row wider than the budget gets a batch of its own. Rows of one width keep input
    order, so packing is deterministic.
    """
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(padded_width(length), []).append(index)
    batches: list[list[int]] = []
    for width in sorted(groups, reverse=True):
        rows, size = groups[width], max(1, batch_tokens // width)
        batches.extend(rows[start : start + size] for start in range(0, len(rows), size))
    return batches


@dataclass(frozen=True)
class SharedPrefix:
    """The leading tokens every prompt shares: system prompt, few-shot turns, role headers.

    In a causal model their hidden states do not depend on the question, so they are computed once:
    each batch continues from their key/value cache and adds their segment sums. Only the question
    and the generation prompt go through the model per row, which cuts the forward's FLOPs by the
    prefix's share of the prompt. A row whose tokens do not start with the prefix (say its context was
    truncated) simply runs in full.
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray

    def matches(self, prompt: EncodedPrompt) -> bool:
        length = len(self.input_ids)
        return (
            len(prompt.input_ids) > length
            and np.array_equal(prompt.input_ids[:length], self.input_ids)
            and np.array_equal(prompt.segment_ids[:length], self.segment_ids)
        )


def find_shared_prefix(encoder: PromptEncoder) -> SharedPrefix | None:
    """The longest run of tokens before the question that two unrelated questions share."""
    first, second = encoder.encode(["0", "Which x?"])
    limit = min(int(np.argmax(first.segment_ids == QUESTION)), int(np.argmax(second.segment_ids == QUESTION)))
    differs = np.flatnonzero(first.input_ids[:limit] != second.input_ids[:limit])
    length = int(differs[0]) if len(differs) else limit
    if length < 2:
        return None
    return SharedPrefix(first.input_ids[:length].copy(), first.segment_ids[:length].copy())


class Scorer:
    """Turns encoded prompts into (intra, inter, score) with one truncated forward per batch."""

    def __init__(
        self, site: SiteForward, *, device: str, backend: str, config: ScoreConfig, prefix: SharedPrefix | None
    ) -> None:
        from gaincurate.kernels import resolve_backend

        self.site = site
        self.device = device
        self.config = config
        self.backend = resolve_backend(backend, device)
        self.batch_tokens = resolve_batch_tokens(config.batch_tokens, device)
        self.stats = BatchStats()
        self.prefix = prefix
        self._prefix_state: tuple[Any, Any, Any] | None = None  # (cache, sums, counts), built on first use

    def score(self, prompts: list[EncodedPrompt], progress: Progress = NULL_PROGRESS) -> dict[str, np.ndarray]:
        """Scores of `prompts` in their order; rows without question tokens stay NaN. Advances `progress` per row."""
        count = len(prompts)
        intra, inter, score = (np.full(count, np.nan) for _ in range(3))
        embeddings: list[np.ndarray | None] = [None] * count
        runnable = [i for i, p in enumerate(prompts) if p.question_tokens > 0]
        unrunnable = count - len(runnable)
        if unrunnable:
            progress.advance(unrunnable)
        with_prefix = [i for i in runnable if self.prefix is not None and self.prefix.matches(prompts[i])]
        in_full = sorted(set(runnable) - set(with_prefix))
        for group, offset in ((with_prefix, len(self.prefix.input_ids) if self.prefix else 0), (in_full, 0)):
            lengths = [len(prompts[i].input_ids) - offset for i in group]
            for batch in pack_batches(lengths, self.batch_tokens):
                rows = [group[i] for i in batch]
                width = padded_width(lengths[batch[0]])
                sums, counts, pooled = self._run_batch([prompts[i] for i in rows], offset, width)
                batch_intra, batch_inter, batch_score = concentration(sums, counts, self.config.inter_weight)
                intra[rows], inter[rows], score[rows] = batch_intra, batch_inter, batch_score
                if pooled is not None:
                    for row, vector in zip(rows, pooled, strict=True):
                        embeddings[row] = vector
                progress.advance(len(rows))
        result = {"intra": intra, "inter": inter, "score": score}
        if self.config.embed:
            result["embedding"] = embeddings
        return result

    def _prefix_parts(self) -> tuple[Any, Any, Any]:
        """Run the shared prefix once: its key/value cache and its segment sums."""
        if self._prefix_state is None:
            import torch
            from transformers import DynamicCache

            from gaincurate.kernels import segment_unit_sums

            ids = torch.from_numpy(self.prefix.input_ids)[None].to(self.device)
            cache = DynamicCache(config=self.site.base.config)  # the prefix forward fills it in place
            hidden = self.site(ids, torch.ones_like(ids), cache=cache)
            segments = torch.from_numpy(self.prefix.segment_ids)[None].to(self.device)
            sums, counts = segment_unit_sums(hidden, segments, NUM_SEGMENTS, backend=self.backend)
            self._prefix_state = (cache, sums, counts)
            self.stats.tokens += len(self.prefix.input_ids)  # the prefix goes through the model once
        return self._prefix_state

    def _run_batch(
        self, prompts: list[EncodedPrompt], offset: int, width: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Score one batch padded to `width` tokens; with `offset` > 0 the first `offset` are the shared prefix's."""
        import torch

        from gaincurate.kernels import segment_unit_sums

        input_ids = torch.zeros((len(prompts), width), dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), offset + width), dtype=torch.long)
        attention_mask[:, :offset] = 1
        segments = torch.full((len(prompts), width), -1, dtype=torch.int8)
        for row, prompt in enumerate(prompts):
            length = len(prompt.input_ids) - offset
            input_ids[row, :length] = torch.from_numpy(prompt.input_ids[offset:])
            attention_mask[row, offset : offset + length] = 1
            segments[row, :length] = torch.from_numpy(prompt.segment_ids[offset:])
        start = time.perf_counter()
        cache = None
        if offset:
            prefix_cache, prefix_sums, prefix_counts = self._prefix_parts()
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(prompts))
        captured = self.site.capture(input_ids.to(self.device), attention_mask.to(self.device), cache=cache)
        hidden = captured[self.site.layer_index]
        segments = segments.to(self.device)
        sums, counts = segment_unit_sums(hidden, segments, NUM_SEGMENTS, backend=self.backend)
        if offset:
            sums, counts = sums + prefix_sums, counts + prefix_counts
        pooled = None
        if self.config.embed:
            # Mean of the raw question hidden states at the embedding layer (by default the scoring layer):
            # the DOTS embedding, free from the same forward.
            mask = (segments == QUESTION).to(torch.float32).unsqueeze(-1)
            embed_hidden = captured[self.site.embed_index]
            pooled = ((embed_hidden.float() * mask).sum(1) / mask.sum(1).clamp_min(1)).cpu().numpy()
        sums, counts = sums.cpu().numpy(), counts.cpu().numpy()
        elapsed = time.perf_counter() - start
        self.stats.forward_seconds += elapsed
        self.stats.batches += 1
        self.stats.tokens += int(attention_mask[:, offset:].sum())
        if self.stats.batches == 1:
            self.stats.first_batch_seconds, self.stats.first_batch_tokens = elapsed, self.stats.tokens
        self.stats.padded_tokens += input_ids.numel()
        self.stats.prefix_tokens_reused += offset * len(prompts)
        return sums, counts, pooled
