"""Splitting a scoring run across processes: torchrun ranks or array-job parts.

The unit of work is the output shard. Shards are dealt to parts so that each part gets about the same
number of prompt characters (a cheap proxy for tokens), largest first. Because a shard's bytes depend
only on its rows and the config, any split writes exactly the files a single process would.

* `torchrun --nproc-per-node N -m gaincurate score ...`: one part per rank, on `cuda:LOCAL_RANK` when
  CUDA is there (nccl) and on the CPU otherwise (gloo). Rank 0 writes the manifest after a barrier. Any CUDA
  `--device` (`cuda`, `cuda:N`) means the rank's own GPU there; CUDA_VISIBLE_DEVICES picks which GPUs they are.
* `gaincurate score ... --num-shards K --shard-index I`: part I of K, no torch.distributed at all (Slurm
  or any array job). Each part leaves a `part-IIIII-of-KKKKK.json` marker when its shards are written;
  `gaincurate merge DIR` completes the manifest once every marker is there.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError


@dataclass(frozen=True)
class Part:
    """Which slice of the shards this process writes."""

    index: int = 0
    count: int = 1
    distributed: bool = False  # True under torchrun: collectives are available
    local_rank: int = 0

    @property
    def is_leader(self) -> bool:
        return self.index == 0


def current_part(num_shards: int | None, shard_index: int | None) -> Part:
    """The part from torchrun's environment or from `--num-shards/--shard-index`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if num_shards is not None:
            raise ConfigError("--num-shards/--shard-index cannot be combined with torchrun; use one or the other")
        return Part(_rank("RANK", world), world, True, _rank("LOCAL_RANK", world, default=0))
    if num_shards is None and shard_index is None:
        return Part()
    if num_shards is None or shard_index is None:
        raise ConfigError("--num-shards and --shard-index go together; pass both or neither")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ConfigError(
            f"--shard-index must be in 0..{num_shards - 1} for --num-shards {num_shards}; got {shard_index}"
        )
    return Part(shard_index, num_shards)


def _rank(name: str, world: int, *, default: int | None = None) -> int:
    """A rank torchrun sets in each process's environment; WORLD_SIZE > 1 without it is a launch mistake."""
    value = os.environ.get(name)
    if value is None and default is not None:
        return default
    if value is None or not value.strip().isdigit():
        got = "is not set" if value is None else f"is {value!r}, not a whole number"
        raise ConfigError(
            f"WORLD_SIZE={world} asks for {world} processes but {name} {got}; launch with "
            "`torchrun --nproc-per-node N -m gaincurate score ...` (it sets RANK, LOCAL_RANK and WORLD_SIZE), or unset "
            "WORLD_SIZE to score in one process (--num-shards/--shard-index split a run without torchrun)"
        )
    return int(value)


def assign(weights: list[int], parts: int) -> list[list[int]]:
    """Deal item indices to `parts` bins, heaviest first onto the lightest bin; deterministic."""
    bins: list[list[int]] = [[] for _ in range(parts)]
    heap = [(0, part) for part in range(parts)]
    for item in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        load, part = heapq.heappop(heap)
        bins[part].append(item)
        heapq.heappush(heap, (load + weights[item], part))
    return [sorted(b) for b in bins]


def part_marker(part: Part) -> str:
    return f"part-{part.index:05d}-of-{part.count:05d}.json"


def device_for(part: Part, device: str) -> str:
    """Under torchrun each rank gets its own GPU, `cuda:LOCAL_RANK`, whatever CUDA device was named.

    `init` pins the process to that GPU and NCCL needs each rank on its own; every rank gets the same `--device`, so
    a `cuda:N` honoured as written would put them all on one GPU (a scores directory's manifest keeps the `cuda:0`
    of a one-process run, which re-scoring with torchrun reuses)."""
    if part.distributed and device.startswith("cuda"):
        return f"cuda:{part.local_rank}"
    return device


def init(part: Part, device: str) -> None:
    if not part.distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            import torch

            torch.cuda.set_device(part.local_rank)
        dist.init_process_group(backend=backend)


def barrier(part: Part) -> None:
    if part.distributed:
        import torch.distributed as dist

        dist.barrier()


def gather(part: Part, value: Any) -> list[Any]:
    """Every rank's `value`, in rank order (just `[value]` outside torchrun)."""
    if not part.distributed:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * part.count
    dist.all_gather_object(values, value)
    return values


def finish(part: Part) -> None:
    if part.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def missing_parts(out: Path, count: int) -> list[int]:
    return [i for i in range(count) if not (out / part_marker(Part(i, count))).exists()]
