"""The per-machine cache of scoring measurements: dtype timings, fidelity gates, batch-size timings.

One JSON file per machine and torch version, in the user cache folder (`gaincurate.fileio.cache_dir`:
`$GAINCURATE_CACHE_DIR`, else `$XDG_CACHE_HOME/gaincurate`, else `~/.cache/gaincurate`):

    tuning-<hash of CPU model, CPU flags, machine, torch version>.json
    {"machine": {...}, "sections": {"dtype_speed": {KEY: {...}}, "fidelity": {...}, ...}}

A kernel or a BLAS library that changes with torch can reorder the dtypes, so a new torch version
starts a fresh file. Entries are keyed inside a section by what they depend on (model fingerprint,
thread count, site, ...). Every write is atomic; two processes writing at once lose at most the other's
new entry, which is then measured again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

from gaincurate.fileio import atomic_write_json, cache_dir

FORMAT = 1


def machine() -> dict[str, Any]:
    """What the measurements depend on besides the model: CPU model and flags, architecture, torch."""
    import torch

    model_name, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model_name:
                model_name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass  # not Linux: the model name and the torch version still separate machines well enough
    return {
        "cpu": model_name or platform.processor() or platform.machine(),
        "cpu_flags_hash": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "architecture": platform.machine(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def machine_load() -> float:
    """The 1-minute load average per core (0.0 where the platform has none): how busy the machine is now."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (OSError, AttributeError):
        return 0.0


def cache_path() -> Path:
    identity = json.dumps(machine(), sort_keys=True)
    return cache_dir() / f"tuning-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def get(section: str, key: str) -> Any:
    """The cached entry, or None when it was never measured here (or the file is unreadable)."""
    return _read(cache_path()).get("sections", {}).get(section, {}).get(key)


def put(section: str, key: str, value: Any) -> None:
    """Store one entry; a cache folder that cannot be written only costs a measurement next time."""
    path = cache_path()
    data = _read(path) or {"format": FORMAT, "machine": machine(), "sections": {}}
    data["sections"].setdefault(section, {})[key] = value
    with contextlib.suppress(OSError):
        atomic_write_json(path, data)
