"""Reaching the Hugging Face Hub: know at once when it cannot be reached, instead of after a minute of retries.

`hub_unreachable()` opens one TCP connection to the Hub's endpoint (`HF_ENDPOINT`, default
https://huggingface.co) with a short timeout and returns why it failed, or None. Behind a proxy the
answer would be wrong, so with a proxy configured it reports reachable and leaves the client to try.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")
_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether the user asked for cached files only (`HF_HUB_OFFLINE=1`)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hub cannot be reached ("Name or service not known", "timed out"), or None when it answers."""
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout).close()
    except OSError as error:
        return f"{endpoint.hostname}: {error.strerror or error}"
    return None
