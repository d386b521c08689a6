"""A GGUF's converted copy that a full cache disk cannot take costs only the next run's conversion, as an unwritable
cache does: the warning, then the loaded tokenizer, and no half-written copy left behind."""

from __future__ import annotations

import logging
from pathlib import Path

from helpers import build_tokenizer

from gaincurate.model import ModelSource, gguf_cache_folder, load_tokenizer


def test_a_full_cache_disk_warns_and_hands_back_the_converted_tokenizer(tmp_path, monkeypatch, caplog):
    from transformers import AutoTokenizer

    monkeypatch.setenv("GAINCURATE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + bytes(60))
    source = ModelSource("gguf", str(tmp_path), "m.gguf", "m.gguf")
    converted = build_tokenizer()
    save = converted.save_pretrained

    def save_to_a_full_disk(folder, **kwargs):
        # The Rust tokenizers library writes tokenizer.json itself; /dev/full fails that write with ENOSPC, as a
        # full disk does, and the library raises a plain Exception for it.
        (Path(folder) / "tokenizer.json").symlink_to("/dev/full")
        return save(folder, **kwargs)

    monkeypatch.setattr(converted, "save_pretrained", save_to_a_full_disk)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda name, gguf_file=None, **kwargs: converted)
    with caplog.at_level(logging.WARNING, logger="gaincurate"):
        assert load_tokenizer(source) is converted
    assert "cannot cache the converted GGUF" in caplog.text and "No space left on device" in caplog.text
    assert not gguf_cache_folder(source).exists() or not any(gguf_cache_folder(source).iterdir())
