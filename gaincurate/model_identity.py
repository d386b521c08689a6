"""What identifies the model a run scored with: a fingerprint that changes when its weights, its tokenizer or its
chat template change (a resumed run must not mix two of them), the Hub revision, and the manifest's facts.

A folder is fingerprinted by the names, sizes and times of the files its scores depend on; a Hub id by the commit of
the snapshot `from_pretrained` loads (`hub_revision`), which `score` brings into the local cache at plan time when
the Hub can be reached, so the plan and the load see one revision.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from gaincurate.model import ModelSource

# What a folder's scores depend on: weights, configs, and the tokenizer with its chat template (transformers saves
# it as chat_template.jinja; sentencepiece, BPE merges and tiktoken files beside).
_FINGERPRINTED = {".gguf", ".safetensors", ".bin", ".json", ".jinja", ".model", ".txt", ".tiktoken"}


def hub_revision(repo_id: str, *, fetch: bool = False) -> str | None:
    """The commit of the snapshot the local cache's `main` points to, or None before the first download. `fetch`:
    ask the Hub first (its newest `main`, which a load that can reach the Hub then takes too)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    found = None
    if fetch:
        with contextlib.suppress(OSError):  # a repository the Hub refuses: the load says so, in its own words
            found = hf_hub_download(repo_id, "config.json")
    found = found if isinstance(found, str) else try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent.name if isinstance(found, str) else None


def source_fingerprint(source: ModelSource) -> str:
    """A short hash that changes when the weights, the tokenizer or its template change: file sizes and times, or
    the Hub revision."""
    digest = hashlib.sha256(source.kind.encode())
    if source.base is not None:  # an adapter: its own files (below) and its base's
        digest.update(source_fingerprint(source.base).encode())
    if source.kind == "hub":
        digest.update(f"{source.folder}@{hub_revision(source.folder)}".encode())
        return digest.hexdigest()[:16]
    folder = Path(source.folder)
    files = [folder / source.gguf_file] if source.gguf_file else sorted(folder.iterdir())
    for file in files:
        if file.is_file() and file.suffix in _FINGERPRINTED:
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def describe_model(source: ModelSource, model: Any, tokenizer: Any) -> dict[str, Any]:
    """Identity facts for the manifest: what was loaded and which template rendered the prompts."""
    template = getattr(tokenizer, "chat_template", None) or ""
    return {
        "id": source.display,
        "kind": source.kind,
        **({"base": source.base.display} if source.base is not None else {}),
        "fingerprint": source_fingerprint(source),
        "revision": hub_revision(source.folder) if source.kind == "hub" else None,
        "architecture": type(model).__name__,
        "num_layers": model.config.num_hidden_layers,
        "hidden_size": getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", None),
        "template_hash": hashlib.sha256(json.dumps(template).encode()).hexdigest()[:16],
    }
