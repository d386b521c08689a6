"""What identifies a model's scores: a folder's fingerprint follows its weights, tokenizer and chat template; a Hub
id's follows the revision scored, which the manifest records. A changed one is refused on resume, not mixed in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import PROBLEMS, write_jsonl

from gaincurate.model import resolve_source
from gaincurate.model_identity import source_fingerprint

CONSOLE = str(Path(sys.executable).with_name("gaincurate"))


def test_a_folder_s_fingerprint_follows_its_chat_template_and_tokenizer_not_its_readme(tiny_llama, tmp_path):
    folder = Path(shutil.copytree(tiny_llama, tmp_path / "model"))
    before = source_fingerprint(resolve_source(str(folder)))
    (folder / "README.md").write_text("notes")
    assert source_fingerprint(resolve_source(str(folder))) == before
    template = folder / "chat_template.jinja"
    assert template.is_file()  # where transformers saves a tokenizer's chat template
    template.write_text(template.read_text() + " ")
    edited = source_fingerprint(resolve_source(str(folder)))
    assert edited != before
    (folder / "merges.txt").write_text("a b\n")
    assert source_fingerprint(resolve_source(str(folder))) not in {before, edited}


def snapshot(cache: Path, revision: str, model: Path) -> None:
    """`acme/tiny` in a Hugging Face cache, its `main` pointing at `revision`."""
    repo = cache / "hub" / "models--acme--tiny"
    shutil.copytree(model, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)


def test_a_hub_model_s_revision_is_recorded_and_a_new_one_is_not_resumed_into(tiny_llama, tmp_path):
    cache, out = tmp_path / "hf", tmp_path / "scores"
    snapshot(cache, "a" * 40, tiny_llama)
    data = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS[:4])
    env = {**os.environ, "HF_HOME": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [CONSOLE, "score", str(data), "--model", "acme/tiny", "--out", str(out), "--device", "cpu", "--dtype",
            "float32", "--batch-tokens", "256", "--quiet", "--json"]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"]["revision"] == "a" * 40
    snapshot(cache, "b" * 40, tiny_llama)  # `main` moved on: another model, whatever its files
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "already_complete" not in again.stdout
    [line] = again.stderr.strip().splitlines()
    assert line.startswith("gaincurate: error: ") and "--overwrite" in line, line


def test_where_the_hub_answers_the_revision_is_the_one_it_serves_and_a_refusal_is_left_to_the_load(monkeypatch):
    import huggingface_hub

    from gaincurate.model_identity import hub_revision

    served = f"/cache/models--acme--tiny/snapshots/{'c' * 40}/config.json"
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: served)
    assert hub_revision("acme/tiny", fetch=True) == "c" * 40

    def refuse(repo, name):
        raise OSError("401 Client Error: gated repository")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    assert hub_revision("acme/tiny", fetch=True) is None
