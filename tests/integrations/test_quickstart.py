"""docs/quickstart.md's commands, as written there, from an empty directory outside the clone (issue #28).

The shell blocks of the page are read from the page itself and run by bash through the installed `gaincurate`
console script, in a fresh `tmp_path`. One change keeps the test offline and fast: the embedded SmolLM2 is
replaced by the tests' tiny random Llama, with the option the quickstart names for it (`--model` on
`gaincurate score` and on `gaincurate example trl-epoch`), as the page's marks say (tests/doc_blocks.py). The
blocks marked not run (the install, a Hub model) are not run; the demo and MATH blocks run in
tests/test_docs_run.py. Between the page's
two curriculum blocks, where it hands over to the user's trainer, the test does what the page asks: one reward line
per prompt of epoch 0 in rewards.jsonl, and the model as `save_pretrained` leaves it at out/checkpoint-100.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from doc_blocks import QUICKSTART_TEST, RUN_BY, block

pytest.importorskip("trl")
PAGE = "docs/quickstart.md"

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"


def shell_blocks() -> list[str]:
    """The page's scoring, curriculum and TRL blocks (tests/doc_blocks.py: the install block and the Hub model's are
    marked not run; the demo and MATH blocks run in tests/test_docs_run.py)."""
    found = [block(PAGE, phrase) for phrase, test in RUN_BY[PAGE].items() if test == QUICKSTART_TEST]
    return [b.text for b in sorted(found, key=lambda b: b.line) if b.language == "bash"]


def with_model(block: str, model: Path) -> str:
    """The block with the tiny model instead of the embedded one, where the quickstart's commands take --model."""
    block = re.sub(r"^gaincurate score (.*?)(\s*#.*)?$", rf"gaincurate score \1 --model {model}\2", block, flags=re.M)
    return block.replace("gaincurate example trl-epoch", f"gaincurate example trl-epoch --model {model}")


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env |= {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    return done


def train_on_it(cwd: Path, model: Path) -> None:
    """What the page leaves to the user: train on epoch 0, write its rewards and a checkpoint."""
    gc_ids = pq.read_table(cwd / "run" / "epoch-0000.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
    lines = [json.dumps({"gc_id": g, "reward": float(i % 2)}) for i, g in enumerate(gc_ids)]
    (cwd / "rewards.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copytree(model, cwd / "out" / "checkpoint-100")  # the model as save_pretrained leaves it


@pytest.mark.slow
def test_the_quickstart_runs_as_written_from_an_empty_directory(tiny_llama, tmp_path):
    blocks = shell_blocks()
    assert len(blocks) == 4 and all(block.startswith("gaincurate ") for block in blocks)
    score, curriculum, stepped, trl = (with_model(block, tiny_llama) for block in blocks)
    assert f"--model {tiny_llama}" in score and f"trl-epoch --model {tiny_llama}" in trl

    # 2. Score the bundled sample prompts, then look at them.
    shown = bash(score, tmp_path)
    assert json.loads((tmp_path / "scores" / "manifest.json").read_text())["rows"] == 320
    assert "difficulty" in shown.stdout

    # 3. Read the scores anywhere: the page's Python, its last expression printed.
    python = block(PAGE, "datasets.load_dataset").text.strip().splitlines()
    code = "\n".join([*python[:-1], f"print(repr({python[-1]}))"])
    read = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert len(ast.literal_eval(read.stdout)) == 5

    # 4. A curriculum, with the user's own training between its two blocks (the page says so between them).
    bash(curriculum, tmp_path)
    assert pq.read_table(tmp_path / "run" / "epoch-0000.parquet").num_rows == 64
    train_on_it(tmp_path, tiny_llama)
    stepped = bash(stepped, tmp_path)
    [line] = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert (line["epoch"], line["rollouts"], line["accuracy"]) == (0, 64, 0.5)  # the rewards written above
    assert (tmp_path / "run" / "epoch-0001.parquet").is_file() and "waiting for training" in stepped.stdout

    # ... or let gaincurate drive the shipped TRL script for three epochs; status then says the run is finished.
    done = bash(trl, tmp_path)
    history = [json.loads(x) for x in (tmp_path / "run-trl" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2] and all(h["rollouts"] == 16 * 2 for h in history)
    assert "finished: the trainer ended after 3 epochs" in done.stdout and "waiting for training" not in done.stdout
    # Each epoch's output starts by saying the run shows the mechanics only (the page says so too), and the
    # trainer keeps two checkpoints, not one per epoch (about 1.6 GB each with SmolLM2-135M).
    for epoch in range(3):
        log = (tmp_path / "run-trl" / "logs" / f"epoch-{epoch:04d}.log").read_text()
        assert log.startswith("note: this run shows the mechanics only"), log[:300]
    assert "shows the mechanics only" in QUICKSTART.read_text().split("## 1.")[0]
    kept = sorted(p.name for p in (tmp_path / "run-trl" / "trainer").glob("checkpoint-*"))
    assert kept == ["checkpoint-16", "checkpoint-24"]
