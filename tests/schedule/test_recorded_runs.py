"""Recorded runs of every strategy and filter: the byte-identity net under the strategy refactor (issue #27).

Each run in RUNS is driven the way a user drives it, through `gaincurate schedule init` and `schedule step`
(the Typer app in process, as tests/schedule/test_cli.py does; settings given as CLI flags, so they outlive
the config classes), over one small fixed scores directory with question embeddings, for five epochs on
deterministic feedback from an improving policy (`feedback_rewards`: a function of the gc_id and the epoch
only). screen screens with `fake_screener` (the same policy, no model), as tests/simulation.py's stands in.
After `init` and after each `next` the replay reads the run directory, and the test compares every step
exactly with tests/schedule/recorded/NAME.json:

* `gc_ids`: the new epoch file's gc_ids, in file order;
* `parquet_sha256`: the SHA-256 of its bytes. They are deterministic (the same run twice, in two processes,
  gives the same bytes), but they include pyarrow's writer version (`created_by`), so a pyarrow upgrade
  moves them alone: `table_sha256` (fields, schema metadata and rows, read back as JSON) and `metadata`
  (the draw in the file's `gaincurate` metadata: epoch, mu, strategy, seed) then stay put;
* `files_added` / `files_removed`: the run directory's listing, with the SHA-256 of the archived feedback;
* `history_added`: the history.jsonl lines the step appended (history is append-only: checked);
* `state_changed` / `state_removed`: state.json, whole at `init`, then each step's changed keys, so the
  recording holds the exact state.json of every step and a diff shows only what moved.

Both files are taken without their wall-clock fields, which differ from one run to the next: `timings` (each
history line's feedback_s / write_s seconds) and `screen_seconds` (the time screen's screening took, in its
`selection` record, in history and in state.json's memory). The machine's folders read as `<run-root>` and
`<scores-root>`. Values compare as JSON text in file order: an int that became a float, a renamed or moved
key and a changed last digit all fail.

A deliberate change re-records every run with one command, and shows up as a reviewable diff of
tests/schedule/recorded/:

    GAINCURATE_RECORD=1 .venv/bin/pytest tests/schedule/test_recorded_runs.py

tests/schedule/recorded-v1/ keeps the recordings made before the strategy plug-ins (from the committed code of
9cb81cc, gaincurate 0.x, state version 1). `test_the_plug_ins_changed_only_what_is_documented` checks the current
recordings against them: every epoch's gc_ids the same; for gain and length (mu's strategies) the epoch files the
same bytes and the history the same lines; for the others the same with mu and its step (mu, ang, ang_source,
signal, delta, mu_next, reranked) left out. Their state.json (version 1) is not migrated: the loader refuses it in
one line naming `schedule init` (docs/schedule.md, "Run directory").
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fake_scores import score_columns, write_scores_dir
from schedule_helpers import FEW_SHOT, SYSTEM_PROMPT, write_hf_model
from typer.testing import CliRunner

from gaincurate.feedback_lines import append_rollouts
from gaincurate.lab.strategies.screening import Screening

pytestmark = pytest.mark.determinism  # make test-determinism runs them again on the narrowest SIMD path

RECORDED = Path(__file__).parent / "recorded"
RECORDED_V1 = Path(__file__).parent / "recorded-v1"  # gaincurate 0.x, before the strategy plug-ins
MU_KEYS = ("mu", "ang", "ang_source", "signal", "delta", "mu_next", "reranked")  # gain's step, history and metadata
RECORD = os.environ.get("GAINCURATE_RECORD") == "1"  # rewrite the recordings instead of trusting them
PROMPTS, SUBSET, EPOCHS, ROLLOUTS = 20, 5, 5, 4
DRAW = ("gc_ids", "parquet_sha256", "table_sha256", "metadata")  # what each epoch file holds
WALL_CLOCK = ("timings", "screen_seconds")  # seconds measured by the clock: never the same twice

# `schedule init` options of each recorded run, besides --scores, --run and the shared SETTINGS.
SETTINGS = ("--subset-size", str(SUBSET), "--seed", "7")
RUNS: dict[str, tuple[str, ...]] = {
    "gain": ("--strategy", "gain"),
    "uniform": ("--strategy", "uniform"),
    "length": ("--strategy", "length"),
    "dots": ("--strategy", "dots"),
    "mopps": ("--strategy", "mopps"),
    "greso": ("--strategy", "greso"),
    "screen": ("--strategy", "screen"),
    "variance": ("--strategy", "variance"),  # added after the plug-ins (no 0.x recording)
    "pilot": ("--strategy", "pilot"),  # added after the plug-ins (no 0.x recording)
    "predict": ("--strategy", "predict"),  # added after the plug-ins (no 0.x recording)
    "probe": ("--strategy", "probe"),  # added after the plug-ins (no 0.x recording)
    "dots-band": ("--strategy", "dots", "--band", "0.2,0.8"),
    "mopps-band": ("--strategy", "mopps", "--band", "0.2,0.8"),
    "gain-skip-zero-variance": ("--strategy", "gain", "--skip-zero-variance"),
    "uniform-skip-zero-variance": ("--strategy", "uniform", "--skip-zero-variance"),
}


# -- the inputs: a fixed scores directory and a policy that improves -------------------------------------------


def write_recorded_scores(directory: Path) -> Path:
    """PROMPTS prompts with short fixed scores, lengths and embeddings (neighbours share a hardness)."""
    ids = np.arange(PROMPTS)
    scores = np.round(0.5 + (ids * 7 % PROMPTS) / 16, 4)
    tokens = 5 + ids * 11 % 50
    inputs = pa.table(
        {
            "problem": [f"question {i}" for i in ids],
            "answer": [str(i % 7) for i in ids],
            "level": pa.array(1 + ids % 5, pa.int64()),
        }
    )
    columns = score_columns(scores, tokens)
    hardness = (ids * 3 % PROMPTS) / PROMPTS
    embeddings = np.stack([hardness, 1 - hardness, (ids % 4) / 4, np.full(PROMPTS, 0.5)], axis=1)
    columns["gc_embedding"] = pa.array([row.astype(np.float16) for row in embeddings], pa.list_(pa.float16()))
    return write_scores_dir(
        directory,
        inputs,
        columns,
        dataset={"name": "toy-recorded", "fingerprint": "toy-recorded-20"},
        shard_rows=8,
        system_prompt=SYSTEM_PROMPT,
        few_shot=FEW_SHOT,
    )


def pass_rate(gc_id: int, epoch: int) -> float:
    """The policy's pass rate on `gc_id` while epoch `epoch` trains: from -0.25 to 0.985 at epoch 0, +0.2 an epoch."""
    return float(np.clip((gc_id * 3 % PROMPTS) / PROMPTS * 1.3 - 0.25 + 0.2 * epoch, 0.0, 1.0))


def feedback_rewards(gc_id: int, epoch: int, rollouts: int = ROLLOUTS) -> list[float]:
    """Rollout r of `gc_id` in `epoch` is right when a fixed pseudo-uniform lies below the pass rate: all wrong
    below 1/32, all right above 31/32, mixed in between."""
    uniforms = [((gc_id * 13 + r * 7 + epoch * 3) % 16 + 0.5) / 16 for r in range(rollouts)]
    return [float(u < pass_rate(gc_id, epoch)) for u in uniforms]


def fake_screener(run_dir, scores_dir, *, seed, model_path=None, progress=None):
    """Stands in for `checkpoint_screener` (as tests/simulation.py's does): the same policy, no model."""

    def screen(gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
        sums = [sum(feedback_rewards(int(i) + 1000 * seed, epoch, rollouts)) for i in gc_ids]
        return Screening(np.asarray(sums, dtype=np.float64), np.full(len(gc_ids), rollouts), 11 * len(gc_ids))

    return screen


# -- a replay and what it records -----------------------------------------------------------------------------


def schedule(*args: Any) -> None:
    from gaincurate.cli.schedule import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"schedule {args[0]} failed: {result.output}") from result.exception


def replay(name: str, root: Path, scores: Path) -> dict[str, Any]:
    """Init the run, write epoch 0, then EPOCHS - 1 steps of feedback: what the run directory held each time."""
    run, checkpoint = root / "run", write_hf_model(root / "policy")
    options = ("--checkpoint", checkpoint) if name in ("screen", "pilot") else ()  # they measure with the newest
    paths = {str(root): "<run-root>", str(scores.parent): "<scores-root>"}
    schedule("init", "--strategy", "gain", "--scores", scores, "--run", run, *SETTINGS, *RUNS[name])
    seen = [look(run, paths)]
    schedule("step", "--run", run, *options)
    seen.append(look(run, paths))
    for epoch in range(EPOCHS - 1):
        ids = seen[-1]["gc_ids"]
        feedback = root / f"rollouts-{epoch}.jsonl"
        append_rollouts(
            feedback, np.repeat(ids, ROLLOUTS).tolist(), [r for i in ids for r in feedback_rewards(i, epoch)]
        )
        schedule("step", "--run", run, "--feedback", feedback, *options)
        seen.append(look(run, paths))
    steps = []
    for index, now in enumerate(seen):
        step = {"step": "init" if index == 0 else f"next (writes epoch {index - 1})"}
        before = seen[index - 1] if index else {"files": {}, "state": {}, "history": []}
        step["files_added"] = {key: value for key, value in now["files"].items() if key not in before["files"]}
        step["files_removed"] = sorted(before["files"].keys() - now["files"].keys())
        step |= {key: value for key, value in now.items() if key not in ("files", "state", "history")}
        assert now["history"][: len(before["history"])] == before["history"], "history.jsonl is append-only"
        step["history_added"] = now["history"][len(before["history"]) :]
        step["state_changed"] = {
            key: value
            for key, value in now["state"].items()
            if key not in before["state"] or canonical(value) != canonical(before["state"][key])
        }
        step["state_removed"] = sorted(before["state"].keys() - now["state"].keys())
        steps.append(step)
    return {"init": [*SETTINGS, *RUNS[name]], "steps": steps}


def look(run: Path, paths: dict[str, str]) -> dict[str, Any]:
    """The run directory now: the newest epoch file, state.json, history.jsonl and the list of files."""
    state = before_readout(scrub(json.loads((run / "state.json").read_text()), paths))
    history = [scrub(json.loads(line), paths) for line in (run / "history.jsonl").read_text().splitlines()]
    history = [{key: value for key, value in line.items() if key != "readout"} for line in history]
    seen: dict[str, Any] = {"files": {}}
    for path in sorted(run.iterdir()):
        seen["files"][path.name] = sha256(path.read_bytes()) if path.name.startswith("feedback-") else "present"
    if state["epoch"] >= 0:
        path = run / f"epoch-{state['epoch']:04d}.parquet"
        table = pq.read_table(path)
        seen |= {
            "gc_ids": table.column("gc_id").to_pylist(),
            "parquet_sha256": sha256(path.read_bytes()),
            "table_sha256": sha256(canonical(table_content(table)).encode()),
            "metadata": json.loads(table.schema.metadata[b"gaincurate"]),
        }
    return seen | {"state": state, "history": history}


def before_readout(state: dict[str, Any]) -> dict[str, Any]:
    """state.json as the recordings (made before the savings readout, issue 39) hold it: without the readout's
    tally, and the draw's figures in the memory under "selection", where they were kept before they got their own
    field (state.json sorts its keys). The readout itself is tested in tests/schedule/test_readout.py."""
    kept = {key: value for key, value in state.items() if key not in ("tally", "selection")}
    figures = (state.get("selection") or {}).get("figures")
    if figures:
        kept["memory"] = dict(sorted({**(kept.get("memory") or {}), "selection": figures}.items()))
    return dict(sorted(kept.items()))


def table_content(table: pa.Table) -> dict[str, Any]:
    """An epoch file's content whatever wrote its bytes: each field's name, type and nullability, the schema
    metadata, and the rows."""
    fields = [[field.name, str(field.type), field.nullable] for field in table.schema]
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    return {"fields": fields, "metadata": metadata, "rows": table.to_pylist()}


def scrub(value: Any, paths: dict[str, str]) -> Any:
    """`value` without its wall-clock fields, this machine's folders as `paths` names them, key order kept."""
    if isinstance(value, dict):
        return {key: scrub(item, paths) for key, item in value.items() if key not in WALL_CLOCK}
    if isinstance(value, list):
        return [scrub(item, paths) for item in value]
    for folder, name in paths.items() if isinstance(value, str) else ():
        if value == folder or value.startswith(folder + "/"):
            return name + value[len(folder) :]
    return value


def canonical(value: Any) -> str:
    """JSON text in the value's own key order: 1 and 1.0 differ, and so do two key orders."""
    return json.dumps(value)


def layout(value: Any, depth: int = 0) -> str:
    """A recording as a file: dicts and lists of dicts opened up to four levels, the rest one line each, so
    a changed field is a changed line."""
    pad, inner = " " * depth, " " * (depth + 1)
    if depth < 4 and isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(key)}: {layout(item, depth + 1).lstrip()}" for key, item in value.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if depth < 4 and isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return pad + "[\n" + ",\n".join(layout(item, depth + 1) for item in value) + "\n" + pad + "]"
    return pad + json.dumps(value)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the tests ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> Path:
    return write_recorded_scores(tmp_path_factory.mktemp("recorded") / "scores")


@pytest.mark.parametrize("name", RUNS)
def test_a_run_replays_its_recording_exactly(name, scores, tmp_path, monkeypatch):
    monkeypatch.setattr("gaincurate.lab.strategies.screening.checkpoint_screener", fake_screener)
    replayed = replay(name, tmp_path, scores)
    path = RECORDED / f"{name}.json"
    if RECORD:
        RECORDED.mkdir(exist_ok=True)
        path.write_text(layout(replayed) + "\n")
    recorded = json.loads(path.read_text())
    assert replayed["init"] == recorded["init"], f"RUNS[{name!r}] changed since {path.name} was recorded"
    assert len(replayed["steps"]) == len(recorded["steps"]) == EPOCHS + 1
    # The epochs drawn first, whatever state.json says: a failure here is a changed draw, not a renamed field.
    drawn = [[{key: step.get(key) for key in DRAW} for step in run["steps"]] for run in (replayed, recorded)]
    assert layout(drawn[0]) == layout(drawn[1]), f"{name}: the epochs drawn differ from {path.name}"
    for now, then in zip(replayed["steps"], recorded["steps"], strict=True):
        assert layout(now) == layout(then), f"{name}: {then['step']} differs from {path.name}"


def test_the_feedback_holds_all_right_all_wrong_and_mixed_prompts():
    """What the filters act on: all-wrong and all-right prompts at epoch 0, zero-variance and mixed ones in
    every epoch (the policy improves, so the all-wrong ones are gone by the end)."""
    everything = {float(count) for count in range(ROLLOUTS + 1)}
    for epoch in range(EPOCHS - 1):
        sums = {sum(feedback_rewards(i, epoch)) for i in range(PROMPTS)}
        assert sums & {0.0, float(ROLLOUTS)} and sums - {0.0, float(ROLLOUTS)}, (epoch, sums)
        assert epoch > 0 or sums == everything, sums


def test_every_strategy_is_recorded():
    from gaincurate.schedule.config import STRATEGIES

    assert set(STRATEGIES) <= {options[1] for options in RUNS.values()}
    assert set(RUNS) == {path.stem for path in RECORDED.glob("*.json")}, "a recording without its run, or the reverse"


def states(recording: dict[str, Any]) -> list[dict[str, Any]]:
    """The whole state.json after each step, rebuilt from a recording's changes."""
    state: dict[str, Any] = {}
    rebuilt = []
    for step in recording["steps"]:
        state = {key: value for key, value in state.items() if key not in step["state_removed"]}
        state = {**state, **step["state_changed"]}
        rebuilt.append(state)
    return rebuilt


@pytest.mark.parametrize("name", [name for name in RUNS if (RECORDED_V1 / f"{name}.json").is_file()])
def test_the_plug_ins_changed_only_what_is_documented(name, tmp_path):
    from gaincurate.errors import InputError
    from gaincurate.schedule.run.rundir import load_run

    now, then = (json.loads((folder / f"{name}.json").read_text()) for folder in (RECORDED, RECORDED_V1))
    keeps_mu = name.split("-")[0] in ("gain", "length")
    for new, old in zip(now["steps"][1:], then["steps"][1:], strict=True):
        assert new["gc_ids"] == old["gc_ids"], f"{name}: {old['step']} drew other prompts"
        dropped = () if keeps_mu else MU_KEYS
        assert new["metadata"] == {k: v for k, v in old["metadata"].items() if k not in dropped}
        lines = [{k: v for k, v in line.items() if k not in dropped} for line in old["history_added"]]
        assert layout(new["history_added"]) == layout(lines), f"{name}: {old['step']} history"
        if keeps_mu:
            assert new["parquet_sha256"] == old["parquet_sha256"]
    (tmp_path / "state.json").write_text(json.dumps(states(then)[-1]))
    with pytest.raises(InputError, match=r"state version 1; .* `gaincurate schedule init --scores") as refused:
        load_run(tmp_path)
    assert "\n" not in str(refused.value)
