"""dots' inputs from other runs, checked where a run starts: a `--reference` file rolled out on another scores
directory's prompts, or on another reward scale, and a `--calibrator` fitted on other embeddings, damaged, or fitted
at another attention temperature. Each is refused in one line naming what to do, before any run is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from difficulty_helpers import write_embedded_scores, write_feedback

from gaincurate.errors import GaincurateError
from gaincurate.lab.difficulty.fit import FitConfig
from gaincurate.lab.difficulty.jobs import fit_scores
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.steps import init_run

FIT = FitConfig(dim=4, steps=10, folds=2, seed=1, tau=0.1)


@pytest.fixture(scope="module")
def pools(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pools")
    pools = {"a": write_embedded_scores(root / "a", 60, seed=0), "b": write_embedded_scores(root / "b", 80, seed=7)}
    feedback = write_feedback(root / "a.jsonl", range(0, 60, 2), samples=4)
    fit_scores(pools["a"], [feedback], root / "a.npz", config=FIT)
    return {**pools, "feedback": feedback, "calibrator": root / "a.npz"}


def refused(tmp_path: Path, scores: Path, **options: object) -> str:
    with pytest.raises(GaincurateError) as error:
        init_run(tmp_path / "run", scores, ScheduleConfig(strategy="dots", subset_size=6, **options))
    assert "\n" not in str(error.value) and not (tmp_path / "run").exists()
    return str(error.value)


def test_a_reference_rolled_out_on_another_pool_is_refused_by_its_sidecar(pools, tmp_path):
    reference = tmp_path / "ref.jsonl"
    reference.write_bytes(pools["feedback"].read_bytes())  # its gc_ids all fall inside pool b too
    (tmp_path / "ref.jsonl.rollout.json").write_text(json.dumps({"scores_dataset": "toy-60-0"}))
    said = refused(tmp_path, pools["b"], reference=str(reference))
    assert "was rolled out on another scores directory's prompts (dataset toy-60-0; these are toy-80-7)" in said
    init_run(tmp_path / "ok", pools["a"], ScheduleConfig(strategy="dots", subset_size=6, reference=str(reference)))


def test_a_reference_on_another_scale_or_empty_says_it_is_read_on_rollouts_scale(pools, tmp_path):
    scaled = tmp_path / "scaled.jsonl"
    scaled.write_text("".join(f'{{"gc_id": {i}, "reward": 2.0}}\n' for i in range(4)))
    said = refused(tmp_path, pools["a"], reference=str(scaled), reward_min=0.0, reward_max=2.0)
    assert said.startswith(f"--reference {scaled} line 1: reward 2 is outside [0, reward_max=1]; it is read on")
    assert "start a run" not in said  # the advice for a run's own feedback
    (tmp_path / "empty.jsonl").write_text("")
    said = refused(tmp_path, pools["a"], reference=str(tmp_path / "empty.jsonl"))
    assert "empty.jsonl holds no rollout" in said and "this epoch" not in said


def test_a_calibrator_fitted_on_other_embeddings_of_the_same_width_is_refused(pools, tmp_path):
    said = refused(tmp_path, pools["b"], calibrator=str(pools["calibrator"]))
    assert "was fitted on the embeddings of other scores" in said and "gaincurate difficulty fit" in said


def test_a_calibrator_fitted_at_another_temperature_names_both(pools, tmp_path):
    said = refused(tmp_path, pools["a"], calibrator=str(pools["calibrator"]), tau_attn=5.0)
    assert said.startswith("tau_attn=5 is not the 0.1 the calibrator") and "pass tau_attn=0.1" in said


def damaged(source: Path, target: Path, change) -> Path:
    with np.load(source) as data:
        arrays = dict(data)
    header = json.loads(bytes(arrays.pop("header")).decode())
    change(arrays, header)
    np.savez(target, **arrays, header=np.frombuffer(json.dumps(header).encode(), np.uint8))
    return target


@pytest.mark.parametrize(
    ("name", "change", "said"),
    [
        ("nan", lambda a, h: a["projection"].__setitem__((0, 0), np.nan), "holds non-finite numbers"),
        ("nan-center", lambda a, h: h["center"].__setitem__(0, float("nan")), "holds non-finite numbers"),
        ("heads", lambda a, h: h.__setitem__("fold_heads", h["fold_heads"][:1]), "is not a calibrator written by"),
        ("narrow", lambda a, h: a.__setitem__("projection", a["projection"][:, :5]), "its shapes disagree"),
    ],
)
def test_a_damaged_calibrator_is_refused_where_the_run_starts(pools, tmp_path, name, change, said):
    path = damaged(pools["calibrator"], tmp_path / f"{name}.npz", change)
    assert said in refused(tmp_path, pools["a"], calibrator=str(path))
    assert "does not exist; check the path" in refused(tmp_path, pools["a"], calibrator=str(tmp_path / "gone.npz"))
