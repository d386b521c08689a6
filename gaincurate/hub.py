"""Reaching the Hugging Face Hub: know at once when it cannot be reached, instead of after a minute of retries.

`hub_unreachable()` opens one TCP connection to the Hub's endpoint (`HF_ENDPOINT`, default
https://huggingface.co) with a short timeout and returns why it failed, or None; the answer stands for PROBE_SECONDS
(one `score` run asks at plan time and again for the model and its tokenizer, up to three timeouts offline; a long
`schedule run` asks afresh later). Behind a proxy the answer would be wrong, so with a proxy configured it reports
reachable and leaves the client to try.
`hub_local_only(repo_id)` says whether a model must come from the local cache, and names the way out when it is
not there.
"""

from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlparse

from gaincurate.errors import ModelError

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")
_TRUE = {"1", "true", "yes", "on"}
PROBE_SECONDS = 60.0
_probed: dict[tuple[str, int], tuple[float, str | None]] = {}  # (host, port) -> (when, the answer)


def hub_offline() -> bool:
    """Whether the user asked for cached files only (`HF_HUB_OFFLINE=1`)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hub cannot be reached ("Name or service not known", "timed out"), or None when it answers."""
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    address = (endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443))
    when, answer = _probed.get(address, (-PROBE_SECONDS, None))
    if time.monotonic() - when < PROBE_SECONDS:
        return answer
    try:
        socket.create_connection(address, timeout=timeout).close()
        answer = None
    except OSError as error:
        answer = f"{endpoint.hostname}: {error.strerror or error}"
    _probed[address] = (time.monotonic(), answer)
    return answer


def hub_local_only(repo_id: str) -> bool:
    """Whether a Hub model must come from the local cache (HF_HUB_OFFLINE=1, or the Hub is unreachable); when it
    is not there, one line naming the way out. `score` asks before it loads anything: without a network,
    `from_pretrained` would retry for about a minute, after seconds of importing torch."""
    from huggingface_hub import try_to_load_from_cache

    unreachable = None if hub_offline() else hub_unreachable()
    if not hub_offline() and unreachable is None:
        return False
    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return True
    if unreachable is None:
        raise ModelError(
            f"cannot load {repo_id}: it is not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 "
            "forbids downloading it; unset HF_HUB_OFFLINE, or pass a local model folder or .gguf file to --model"
        )
    raise ModelError(
        f"cannot download {repo_id}: the Hugging Face Hub is unreachable ({unreachable}) and the model "
        "is not in the local cache; connect, set HF_HUB_OFFLINE=1 to use only cached models, "
        "or pass a local model folder or .gguf file to --model"
    )
