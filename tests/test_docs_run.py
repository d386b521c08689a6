"""Every shell and Python block of README.md, docs/quickstart.md, docs/trl.md and docs/verl.md runs on this CPU, or
its page says why it cannot (issue 49; the marks are described in tests/doc_blocks.py and README.md).

Each block is taken from its page (`doc_blocks.block`) and run through the installed console script or Python, from
an empty directory, offline. Where the page says "reduced", the tests' tiny random Llama stands in for MODEL,
`path/to/model` and the embedded SmolLM2, and a training run is shortened as its mark says. The quickstart's
scoring, curriculum and TRL blocks run in tests/integrations/test_quickstart.py, which checks their results.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import DOCS_TEST, NOT_RUN, PAGES, ROOT, RUN_BY, block, blocks

from gaincurate.schedule.config import DEFAULT_STRATEGY

BIN = Path(sys.executable).parent
MATH = ROOT.parent / "shared" / "data" / "math_train.json"  # `make bench`'s DATA; the quickstart's MATH file
SAMPLE = ROOT / "gaincurate" / "assets" / "math_sample.jsonl"


def run(command: list[str], cwd: Path, *, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "TOKENIZERS_PARALLELISM": "false"}
    env |= {"COLUMNS": "200", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"{command}\n{stdin or ''}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return run(["bash", "-euo", "pipefail", "-c", script], cwd)


def python(prelude: str, code: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-"], cwd, stdin=prelude + "\n" + code)


def with_tiny(text: str, model: Path) -> str:
    """MODEL and path/to/model, the pages' placeholders, as the tests' tiny random Llama."""
    return re.sub(r"\bMODEL\b", str(model), text).replace("path/to/model", str(model))


def sample_rows(path: Path, column: str, rows: int = 64) -> Path:
    """`rows` of the bundled prompts with their answers, the question in `column`: the pages' my.jsonl / data.jsonl."""
    lines = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:rows]]
    path.write_text("".join(json.dumps({column: r["problem"], "answer": r["answer"]}) + "\n" for r in lines))
    return path


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_every_block_of_the_four_pages_is_run_by_a_test_or_marked_with_why_not():
    for page in PAGES:
        claimed = RUN_BY.get(page, {})
        for phrase in claimed:
            block(page, phrase)  # each phrase names exactly one block
        for found in blocks(page):
            where = f"{page}:{found.line}"
            runners = [test for phrase, test in claimed.items() if phrase in found.text]
            if found.not_run is not None:
                kind, reason = found.not_run
                assert kind in NOT_RUN and len(reason) > 20, f"{where}: 'not run: gpu|download: REASON', got {kind!r}"
                assert not runners, f"{where} is marked not run, but {runners} runs it"
            else:
                assert len(runners) == 1, f"{where}: run by {runners or 'no test'}; mark it `not run` with the reason"
                assert found.mark is None or found.mark.startswith("run: "), f"{where}: unknown mark {found.mark!r}"
    # What a CPU cannot run is said on the page: every verl launch is marked, and nothing of the quickstart is lost.
    assert all(b.not_run for b in blocks("docs/verl.md"))
    assert len(blocks("docs/quickstart.md")) == 9 and len(blocks("docs/trl.md")) == 6


@pytest.mark.slow
def test_the_demo_block_runs_at_smoke_size_and_its_tables_rederive_from_its_folder(tmp_path):
    demo = block("docs/quickstart.md", "gaincurate bench curriculum --demo")
    assert demo.reduced and "--smoke" in demo.mark
    first, second = demo.text.strip().splitlines()
    trained = bash(re.sub(r"--demo\b", "--demo --smoke", first), tmp_path)
    # Progress on stderr: its stages and pairs (a plain line with the ETA comes every few seconds, so a smoke-size
    # run on a quiet machine may end before the first; the line's format is tested with the progress itself).
    assert re.search(r"\d+ pairs on \d+ workers", trained.stderr) and "finished uniform" in trained.stderr
    shown = trained.stdout
    for arm in ("uniform", DEFAULT_STRATEGY):  # the baseline and the scheduler's default, whatever it is
        assert re.search(rf"^\| {arm} \| 1 \|", shown, flags=re.M), shown
    assert "Savings readout per arm" in shown and "What this shows" in shown and "not the published verdict" in shown
    assert (tmp_path / "bench-demo" / "curves.png").stat().st_size > 0
    # The second line of the block: every table line the run printed comes back from the folder alone.
    report = bash(second, tmp_path).stdout
    printed = shown.split("\nCurves:")[0]
    assert [line for line in printed.splitlines() if line not in report.splitlines()] == []
    assert (tmp_path / "demo-curves.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.skipif(not MATH.is_file(), reason="MATH's training set is not at ../shared/data/math_train.json here")
def test_the_math_command_scores_the_row_without_an_answer_and_counts_it(tiny_llama, tmp_path):
    math = block("docs/quickstart.md", "math_train.json")
    assert math.reduced and "rows 860-899" in math.mark
    rows = json.loads(MATH.read_text())
    assert rows[886]["answer"] is None and all(row["answer"] is not None for row in rows[:886])
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "math_train.json").write_text(json.dumps(rows[860:900]))
    work = tmp_path / "work"
    work.mkdir()
    bash(math.text.replace("gaincurate score ", f"gaincurate score --model {tiny_llama} ", 1), work)
    manifest = json.loads((work / "math-scores" / "manifest.json").read_text())
    assert manifest["rows"] == 40 and manifest["answers"]["missing"] == 1  # row 886: "answer": null


# What the trl.md snippets take from "your script": the model, its tokenizer and reward functions. GRPOConfig keeps
# every argument the page passes (use_cpu and bf16 included) and gets the test's size on top.
PRELUDE = """
import trl
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained({model!r})
tokenizer = AutoTokenizer.from_pretrained({model!r})


def accuracy_reward(completions, answer, **kwargs):
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(str(a) in text) for text, a in zip(texts, answer, strict=True)]


def format_reward(completions, **kwargs):
    return [0.0 for _ in completions]


_config = trl.GRPOConfig
trl.GRPOConfig = lambda **given: _config(**given, num_train_epochs=1, num_generations=2,
    per_device_train_batch_size=8, max_completion_length=8, report_to="none", disable_tqdm=True)
"""


@pytest.mark.slow
def test_the_trl_pages_own_script_scores_then_trains_an_epoch_on_cpu(tiny_llama, tmp_path):
    """The page's scoring command, then its three Python blocks in one interpreter (each as written, in its own
    folder), as a user's script would run them: one import of torch, transformers and trl instead of three."""
    score = block("docs/trl.md", "gaincurate score my.jsonl")
    script = block("docs/trl.md", "ScheduleConfig(subset_size=64)")
    gain = block("docs/trl.md", 'strategy="gain"')
    embedded = block("docs/trl.md", "load_embedded()")
    assert score.reduced and script.reduced and "use_cpu=not gpu, bf16=gpu" in script.text
    assert gain.reduced and "..." not in gain.text and embedded.mark.startswith("run: as written")
    sample_rows(tmp_path / "my.jsonl", "prompt")
    bash(with_tiny(score.text, tiny_llama), tmp_path)
    (tmp_path / "gain").mkdir()
    (tmp_path / "gain" / "scores").symlink_to(tmp_path / "scores")
    (tmp_path / "embedded").mkdir()
    fresh_model = f"model = AutoModelForCausalLM.from_pretrained({str(tiny_llama)!r})"  # not the one trained above
    shown = python(
        PRELUDE.format(model=str(tiny_llama)),
        "\n".join([
            script.text, "import os", "os.chdir('gain')", fresh_model, gain.text,
            "os.chdir('../embedded')", embedded.text, "print(model.training, model.num_parameters(), len(tokenizer))",
        ]),
        tmp_path,
    )  # fmt: skip
    [line] = history(tmp_path / "run")
    assert line["epoch"] == 0 and line["rollouts"] == 64 * 2  # one epoch of 64 prompts, 2 generations each
    assert json.loads((tmp_path / "run" / "state.json").read_text())["config"]["strategy"] == DEFAULT_STRATEGY
    assert [p.name for p in (tmp_path / "out").glob("checkpoint-*/trainer_state.json")] == ["trainer_state.json"]

    # "In process: the trainer class": gain, re-scored with the live model at the epoch's end.
    [line] = history(tmp_path / "gain" / "run")
    assert line["ang"] is not None and line["ang_source"] != "stored"  # re-scored with the live model

    # The embedded SmolLM2 in one call (its block runs last: it takes the names model and tokenizer).
    assert int(shown.stdout.split()[-2]) > 100_000_000, shown.stdout  # SmolLM2-135M, ready to train


@pytest.mark.slow
def test_the_trl_pages_example_commands_run(tiny_llama, tmp_path):
    examples = block("docs/trl.md", "trl-inprocess --workdir")
    assert examples.reduced
    shown = bash(with_tiny(examples.text, tiny_llama), tmp_path).stdout
    assert "savings readout" in shown or "epoch" in shown
    for workdir in ("trl-tiny", "trl-mine"):
        assert [h["epoch"] for h in history(tmp_path / workdir / "run")] == [0, 1, 2]


@pytest.mark.slow
def test_the_trl_pages_out_of_process_loop_runs_an_epoch(tiny_llama, tmp_path):
    loop = block("docs/trl.md", "gaincurate score data.jsonl")
    assert loop.reduced and "1 epoch instead of 10" in loop.mark  # resumed epochs: integrations/test_trl_epoch.py
    sample_rows(tmp_path / "data.jsonl", "problem")
    script = (
        with_tiny(loop.text, tiny_llama)
        .replace("--epochs 10", "--epochs 1")
        .replace("--total-epochs 10", "--total-epochs 1")
    )
    bash(script, tmp_path)
    [line] = history(tmp_path / "run")
    assert line["epoch"] == 0 and line["ang_source"] == "rescored"  # stepped with the checkpoint's re-scoring


def test_the_docs_test_is_this_file():
    assert Path(__file__).resolve() == ROOT / DOCS_TEST
