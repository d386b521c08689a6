"""The compute engine: encoded prompts -> truncated forward -> segment sums -> (intra, inter, score).

Prompts are packed into batches of rows of one padded width, at most `batch_tokens` tokens, widest first
(`pack_batches`). A row's width is a function of its own length and the device (`padded_width`): its exact
length on a CPU, a bucket on a GPU. The leading tokens that every prompt shares (system prompt, few-shot turns,
role headers) run once: each batch continues from their key/value cache and adds their segment sums, since in a
causal model their hidden states do not depend on the question. On a GPU a batch's rows go up from pinned memory
without blocking, the forward runs as `forward_kernels.right_padded_forward` says (rows are padded on the right:
attention without the padding mask, the layers' elementwise work fused, where the model allows), and its results stay
on the device until the call's results are read, once (`Scorer.launch`). A batch's seconds are the device's own
(`DeviceClock`).

Where the GPU's torch has variable-length flash attention (`packed_forward.packing_applies`) and padding the rows to
buckets would add at least `PACK_FROM_PADDING` of their tokens, a batch's rows are not padded at all: they are laid
end to end up to `batch_tokens` tokens, each attending to its own tokens and to the shared prefix's cached keys and
values (`packed_forward`), and the segment sums read the packed rows. A CPU keeps its exact widths, and its bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaincurate.metrics import concentration
from gaincurate.model import SiteForward
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.prompts import NUM_SEGMENTS, QUESTION, EncodedPrompt, PromptEncoder
from gaincurate.scoring.config import ScoreConfig

log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """Work counters across batches, for the manifest's timings."""

    tokens: int = 0  # real tokens through the model
    padded_tokens: int = 0  # every position through the model, padding included: never fewer than `tokens`
    batches: int = 0
    forward_seconds: float = 0.0
    prefix_tokens_reused: int = 0
    packed_batches: int = 0  # batches whose rows ran packed end to end
    first_batch_seconds: float = 0.0  # kernel set-up and the shared prefix: a fixed cost, reported apart
    first_batch_tokens: int = 0


# Packed rows pay attention work that padded rows do not (a second call over the shared prefix, the merge by
# log-sum-exp, each key/value head copied per query head where torch lacks grouped heads): they lose to rows padded to
# buckets that carry little padding and win by far where short rows carry much (docs/scale-out.md, "Throughput on one
# GPU"). So rows pack where padding them would add at least this share of their tokens.
PACK_FROM_PADDING = 0.10

# Widths a GPU bucket covers per doubling of length: past 256 tokens a row's padding is below 1/16 of its length
# (about 1/32 on average), and a large run's rows still fall into few widths, so its batches stay few and large:
# padding is paid in FLOPs, a batch more in its kernel launches, and a long row's batch is bound by its FLOPs.
BUCKETS_PER_OCTAVE = 16
# The narrowest GPU bucket step. A batch of short rows costs its kernel launches (about a thousand for a 28-layer
# model), not its FLOPs, so rows under 128 tokens share 8 widths (16, 32, ..., 128) rather than one per length.
MIN_BUCKET_STEP = 16


class DeviceClock:
    """Seconds between marks, the first made on creation: on a GPU by CUDA events, so that a batch's seconds are the
    device's from the end of the batch before to the end of its own, whatever the host did meanwhile."""

    def __init__(self, device: str) -> None:
        self.device, self.marks = device, []
        self.mark()

    def mark(self) -> None:
        if not on_gpu(self.device):
            self.marks.append(time.perf_counter())
            return
        import torch

        self.marks.append(torch.cuda.Event(enable_timing=True))
        self.marks[-1].record(torch.cuda.current_stream(self.device))

    def intervals(self) -> list[float]:
        """Seconds between consecutive marks; on a GPU once the marked work is done (its results read)."""
        pairs = zip(self.marks, self.marks[1:], strict=False)
        return [end - start if isinstance(end, float) else start.elapsed_time(end) / 1e3 for start, end in pairs]


def on_gpu(device: str) -> bool:
    return str(device).startswith("cuda")


def default_varlen(model: Any, device: str) -> Callable | None:
    """The variable-length attention that packs `model`'s rows on `device` (`packed_forward.cuda_varlen`), or None
    where packing does not apply: a CPU keeps its exact widths, and a GPU whose torch lacks the function keeps its
    padded buckets (logged, with the reason)."""
    if not on_gpu(device):
        return None
    from gaincurate.packed_forward import cuda_varlen, packing_applies

    why_not = packing_applies(model, device)
    if why_not:
        log.info("rows run padded on %s: %s", device, why_not)
        return None
    return cuda_varlen()[0]


def padded_width(length: int, device: str = "cpu") -> int:
    """The width a row of `length` tokens is padded to on `device`: a function of its own length only. A CPU pays for
    every padded token and gives a row padded to another width other last bits (attention and matmuls reduce over the
    width), so a row keeps its exact length. A GPU pays per batch: the length is rounded up to a multiple of
    1/BUCKETS_PER_OCTAVE of the largest power of two at or below it, and of MIN_BUCKET_STEP."""
    if not on_gpu(device):
        return length
    step = max(MIN_BUCKET_STEP, (1 << (length.bit_length() - 1)) // BUCKETS_PER_OCTAVE)
    return -(-length // step) * step


def pack_batches(lengths: Sequence[int], batch_tokens: int, device: str = "cpu") -> list[list[int]]:
    """Group row indices into batches of rows of one padded width, widest first, at most `batch_tokens` tokens. A
    row's width is `padded_width` of its own length, never its batch companions'. How many rows share its batch can
    still move its last bits, since BLAS picks its kernel by the product's shape (docs/shards.md, "What the scores
    promise": within `SCORE_TOLERANCE`). A row wider than the budget gets a batch of its own. Rows of one width keep
    input order, so packing is deterministic."""
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(padded_width(length, device), []).append(index)
    batches: list[list[int]] = []
    for width in sorted(groups, reverse=True):
        rows, size = groups[width], max(1, batch_tokens // width)
        batches.extend(rows[start : start + size] for start in range(0, len(rows), size))
    return batches


@dataclass(frozen=True)
class SharedPrefix:
    """The leading tokens every prompt shares (system prompt, few-shot turns, role headers), run once: in a causal model
    their hidden states do not depend on the question. A row whose tokens do not start with them (say its context was
    truncated) runs in full."""

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


def expand_cache(cache: Any, rows: int, model_config: Any) -> Any:
    """A new cache that starts each of `rows` rows from `cache`'s one row: every filled layer's keys and values
    expanded (views, not copies; the forward's append makes the one copy it needs), `cache` left as it is. A forward
    that stopped at a layer filled the layers up to it only."""
    from transformers import DynamicCache

    filled = [layer for layer in cache.layers if layer.keys is not None and layer.keys.numel()]
    layers = [(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1)) for layer in filled]
    expanded = DynamicCache(layers, config=model_config)
    for layer, source in zip(expanded.layers, filled, strict=False):
        # A sliding-window layer keeps its last keys only but counts every token it has seen: what follows takes its
        # positions and mask from that count, not from the keys kept.
        if hasattr(source, "cumulative_length"):
            layer.cumulative_length = source.cumulative_length
    return expanded


def batch_plan(
    prompts: Sequence[EncodedPrompt], prefix: SharedPrefix | None, batch_tokens: int, device: str,
    packed: bool = False,
) -> list[tuple[list[int], int, int]]:  # fmt: skip
    """(rows, prefix tokens skipped, padded width) of each forward over `prompts`: rows that start with the shared
    prefix continue from its cache, the others run in full; rows without question tokens run in none. `packed`: rows
    laid end to end (`packed_forward.fill_batches`), the width being the batch's tokens in all."""
    from gaincurate.packed_forward import fill_batches

    runnable = [i for i, prompt in enumerate(prompts) if prompt.question_tokens > 0]
    with_prefix = [i for i in runnable if prefix is not None and prefix.matches(prompts[i])]
    in_full = sorted(set(runnable) - set(with_prefix))
    plan = []
    for group, offset in ((with_prefix, len(prefix.input_ids) if prefix else 0), (in_full, 0)):
        lengths = [len(prompts[i].input_ids) - offset for i in group]
        if packed:
            plan += [([group[i] for i in batch], offset, sum(lengths[i] for i in batch))
                     for batch in fill_batches(lengths, batch_tokens)]  # fmt: skip
            continue
        for batch in pack_batches(lengths, batch_tokens, device):
            plan.append(([group[i] for i in batch], offset, padded_width(lengths[batch[0]], device)))
    return plan


def padding_overhead(padded_tokens: int, real_tokens: int) -> float:
    """Tokens through the model over real tokens, less one: the share of work that padding adds."""
    return padded_tokens / max(real_tokens, 1) - 1


def packs(varlen: Callable | None, padded_tokens: int, real_tokens: int) -> bool:
    """Whether rows whose padded plan puts `padded_tokens` through the model for `real_tokens` run packed through
    `varlen`: where there is one and the padding adds at least PACK_FROM_PADDING. Scoring and the likelihood ask."""
    return varlen is not None and padding_overhead(padded_tokens, real_tokens) >= PACK_FROM_PADDING


class Scorer:
    """Turns encoded prompts into (intra, inter, score) with one truncated forward per batch of at most
    `batch_tokens` padded tokens (a number: `tuning.resolve_batch_tokens` decides a run's).

    `varlen`: the variable-length attention that runs rows packed end to end (`gaincurate.packed_forward`); by
    default torch's flash attention where packing applies (a GPU), else none, and rows run padded. With it, a call's
    rows pack where padding them would add at least PACK_FROM_PADDING of their tokens (`packs`).
    """

    def __init__(self, site: SiteForward, *, device: str, backend: str, config: ScoreConfig,
                 prefix: SharedPrefix | None, batch_tokens: int, varlen: Callable | None = None) -> None:  # fmt: skip
        from gaincurate.kernels import resolve_backend

        self.varlen = varlen if varlen is not None else default_varlen(site.base, device)
        self.site, self.device, self.config, self.prefix = site, device, config, prefix
        self.backend = resolve_backend(backend, device)
        self.batch_tokens = batch_tokens
        self.stats = BatchStats()
        self._prefix_state: tuple[Any, Any, Any] | None = None  # (cache, sums, counts), built on first use
        self._prefix_layers: dict[int, tuple[Any, Any]] | None = None  # its keys and values, for packed rows

    def score(self, prompts: list[EncodedPrompt], progress: Progress = NULL_PROGRESS) -> dict[str, np.ndarray]:
        """Scores of `prompts` in their order; rows without question tokens stay NaN. Advances `progress` per row."""
        return self.launch(prompts, progress)()

    def launch(self, prompts: list[EncodedPrompt], progress: Progress = NULL_PROGRESS) -> Callable[[], dict]:
        """Queue the forwards over `prompts`; return what reads their scores (as `score` returns them). On a GPU nothing
        queued waits for the device: the host's work until the read (the next shard's tokens) overlaps the forwards."""
        count = len(prompts)
        plan = batch_plan(prompts, self.prefix, self.batch_tokens, self.device)
        real = sum(len(prompts[row].input_ids) - offset for rows, offset, _ in plan for row in rows)
        packed = packs(self.varlen, sum(width * len(rows) for rows, _, width in plan), real)
        if packed:
            plan = batch_plan(prompts, self.prefix, self.batch_tokens, self.device, packed=True)
            self.stats.packed_batches += len(plan)
        unrunnable = count - sum(len(rows) for rows, _, _ in plan)
        if unrunnable:
            progress.advance(unrunnable)
        clock, order, parts, work = DeviceClock(self.device), [], [], []  # order: the rows as their results come
        for rows, offset, width in plan:
            batch = [prompts[i] for i in rows]
            results, counted = self._run_packed(batch, offset) if packed else self._run_batch(batch, offset, width)
            clock.mark()
            parts.append(results)
            work.append(counted)
            order.extend(rows)
            progress.advance(len(rows))

        def read() -> dict[str, Any]:
            import torch

            intra, inter, score = (np.full(count, np.nan) for _ in range(3))
            embeddings: list[np.ndarray | None] = [None] * count
            if parts:  # one synchronisation: every batch's sums, counts and pooled embeddings moved to the host
                sums, counts, pooled = (None if part[0] is None else torch.cat(part).cpu().numpy()
                                        for part in zip(*parts, strict=True))  # fmt: skip
                for seconds, counted in zip(clock.intervals(), work, strict=True):
                    self._count(seconds, *counted)
                intra[order], inter[order], score[order] = concentration(sums, counts, self.config.inter_weight)
                for row, vector in zip(order, [] if pooled is None else pooled, strict=False):
                    embeddings[row] = vector
            result = {"intra": intra, "inter": inter, "score": score}
            if self.config.embed:
                result["embedding"] = embeddings
            return result

        return read

    def _prefix_parts(self) -> tuple[Any, Any, Any]:
        """Run the shared prefix once: its key/value cache and its segment sums."""
        if self._prefix_state is None:
            import torch
            from transformers import DynamicCache

            from gaincurate.forward_kernels import right_padded_forward
            from gaincurate.kernels import segment_unit_sums

            ids = torch.from_numpy(self.prefix.input_ids)[None].to(self.device)
            cache = DynamicCache(config=self.site.base.config)  # the prefix forward fills it in place
            with right_padded_forward(self.site.base, self.device):  # the batches' forward, so one path per token
                hidden = self.site(ids, torch.ones_like(ids), cache=cache)
            segments = torch.from_numpy(self.prefix.segment_ids)[None].to(self.device)
            sums, counts = segment_unit_sums(hidden, segments, NUM_SEGMENTS, backend=self.backend)
            self._prefix_state = (cache, sums, counts)
            self.stats.tokens += len(self.prefix.input_ids)  # the prefix goes through the model once, unpadded
            self.stats.padded_tokens += len(self.prefix.input_ids)
        return self._prefix_state

    def _run_batch(self, prompts: list[EncodedPrompt], offset: int, width: int) -> tuple[tuple, tuple[int, int, int]]:
        """One batch padded to `width` tokens (with `offset` > 0 the first `offset` are the shared prefix's): its
        sums, counts and pooled embeddings (or None), left on the device, and its real, padded and prefix tokens."""
        import torch

        from gaincurate.forward_kernels import right_padded_forward
        from gaincurate.kernels import segment_unit_sums
        from gaincurate.kernels.torch_impl import to_device

        input_ids = torch.zeros((len(prompts), width), dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), offset + width), dtype=torch.long)
        attention_mask[:, :offset] = 1
        segments = torch.full((len(prompts), width), -1, dtype=torch.int8)
        for row, prompt in enumerate(prompts):
            length = len(prompt.input_ids) - offset
            input_ids[row, :length] = torch.from_numpy(prompt.input_ids[offset:])
            attention_mask[row, offset : offset + length] = 1
            segments[row, :length] = torch.from_numpy(prompt.segment_ids[offset:])
        real_tokens = int(attention_mask[:, offset:].sum())
        input_ids, attention_mask, segments = (to_device(t, self.device) for t in (input_ids, attention_mask, segments))
        cache = None
        if offset:
            _, prefix_sums, prefix_counts = self._prefix_parts()
            cache = expand_cache(self._prefix_parts()[0], len(prompts), self.site.base.config)
        with right_padded_forward(self.site.base, self.device):  # rows are padded on the right
            captured = self.site.capture(input_ids, attention_mask, cache=cache)
        hidden = captured[self.site.layer_index]
        # The ids come from the encoder's segments (-1, QUESTION, CONTEXT): no range check, whose answer a GPU
        # would make the host wait for.
        sums, counts = segment_unit_sums(hidden, segments, NUM_SEGMENTS, backend=self.backend, check_ids=False)
        if offset:
            sums, counts = sums + prefix_sums, counts + prefix_counts
        pooled = None
        if self.config.embed:
            # Mean of the raw question hidden states at the embedding layer (by default the scoring layer):
            # the DOTS embedding, free from the same forward.
            mask = (segments == QUESTION).to(torch.float32).unsqueeze(-1)
            embed_hidden = captured[self.site.embed_index]
            pooled = (embed_hidden.float() * mask).sum(1) / mask.sum(1).clamp_min(1)
        return (sums, counts, pooled), (real_tokens, len(prompts) * width, offset * len(prompts))

    def _count(self, elapsed: float, tokens: int, padded_tokens: int, prefix_tokens: int) -> None:
        """One batch's work in the run's counters."""
        self.stats.forward_seconds += elapsed
        self.stats.batches += 1
        self.stats.tokens += tokens
        if self.stats.batches == 1:
            self.stats.first_batch_seconds, self.stats.first_batch_tokens = elapsed, self.stats.tokens
        self.stats.padded_tokens += padded_tokens
        self.stats.prefix_tokens_reused += prefix_tokens

    def _run_packed(self, prompts: list[EncodedPrompt], offset: int) -> tuple[tuple, tuple[int, int, int]]:
        """One batch of rows packed end to end (after `offset` tokens of the shared prefix, attended through its
        cached keys and values): as `_run_batch`, with no padding."""
        import torch

        from gaincurate.kernels import packed_segment_unit_sums
        from gaincurate.kernels.torch_impl import padded_index, to_device
        from gaincurate.packed_forward import pack_rows, packed_forward, prefix_key_values

        rows = pack_rows([prompt.input_ids[offset:] for prompt in prompts], offset)
        segments = torch.from_numpy(np.concatenate([prompt.segment_ids[offset:] for prompt in prompts]))
        ids, positions, segments = (to_device(t, self.device) for t in (rows.input_ids, rows.position_ids, segments))
        if offset and self._prefix_layers is None:
            self._prefix_layers = prefix_key_values(self._prefix_parts()[0])
        with packed_forward(self.site.base, self.device, rows, self.varlen, self._prefix_layers if offset else None):
            captured = self.site.capture(ids, None, position_ids=positions)
        sums, counts = packed_segment_unit_sums(captured[self.site.layer_index][0], segments, rows.starts,
                                                NUM_SEGMENTS, backend=self.backend, check_ids=False)  # fmt: skip
        if offset:
            sums, counts = sums + self._prefix_parts()[1], counts + self._prefix_parts()[2]
        pooled = None
        if self.config.embed:  # the mean of the raw question hidden states, as `_run_batch` pools them
            index, valid = padded_index(rows.starts, self.device)
            mask = (valid & (segments[index] == QUESTION)).to(torch.float32).unsqueeze(-1)
            pooled = (captured[self.site.embed_index][0][index].float() * mask).sum(1) / mask.sum(1).clamp_min(1)
        tokens = rows.starts[-1]
        return (sums, counts, pooled), (tokens, tokens, offset * len(prompts))
