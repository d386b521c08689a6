"""Results reach stdout through one renderer: `--json` is strict JSON everywhere, and `status` fits the strategy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gaincurate.cli import main
from gaincurate.cli.render import json_line, json_text, plain


def strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def run(args: list, capsys) -> str:
    main([str(arg) for arg in args])
    return capsys.readouterr().out


def test_non_finite_numbers_become_null():
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float64("nan"), "d": np.int64(3), "e": (Path("x"),)}
    assert plain(data) == {"a": None, "b": [None, None, 1.5], "c": None, "d": 3, "e": ["x"]}
    assert strict_json(json_text(data)) == plain(data)
    assert json_line({"r": np.float32(0.5)}) == '{"r": 0.5}\n'


def test_show_json_prints_null_for_an_undefined_correlation(scored, gaincurate):
    result = gaincurate("show", scored, "--json", "--against", "level")  # `level` is constant: Spearman is NaN
    assert result.returncode == 0, result.stderr
    summary = strict_json(result.stdout)
    assert summary["spearman"]["level"] is None and isinstance(summary["spearman"]["question_tokens"], float)


def test_show_prints_a_conversations_question_not_its_dicts(tiny_llama, gaincurate, tmp_path):
    """TRL's conversational `prompt` column was shown as "[{'role': 'system', 'content': ..."."""
    from helpers import PROBLEMS, score_in_process, write_jsonl

    rows = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p["problem"]}],
             "answer": p["answer"]} for p in PROBLEMS]  # fmt: skip
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    # Scored in this process: what `show` prints is under test, through the console script.
    score_in_process([data, "--prompt-column", "prompt", "--model", tiny_llama, "--device", "cpu", "--dtype",
                      "float32", "--quiet", "--out", tmp_path / "scores"])  # fmt: skip
    shown = gaincurate("show", "scores", "--json")
    texts = [row["text"] for row in strict_json(shown.stdout)["top"]]
    assert texts and all(text in {p["problem"] for p in PROBLEMS} for text in texts), texts
    table = gaincurate("show", "scores")
    assert "role" not in table.stdout and "Be brief" not in table.stdout and texts[0][:20] in table.stdout


def test_status_of_a_strategy_without_mu_shows_no_mu(scored, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(["schedule", "init", "--scores", scored, "--run", run_dir, "--strategy", "uniform", "--subset-size", "4"],
        capsys)  # fmt: skip
    assert "around mu" not in run(["schedule", "step", "--run", run_dir], capsys)
    ids = pq.read_table(run_dir / "epoch-0000.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
    feedback = tmp_path / "f.jsonl"
    feedback.write_text("".join(json.dumps({"gc_id": i, "reward": float(i % 2)}) + "\n" for i in ids))
    stepped = strict_json(run(["schedule", "step", "--run", run_dir, "--feedback", feedback, "--json"], capsys))
    assert stepped["mu"] is None and "mu" not in stepped["record"] and stepped["record"]["accuracy"] is not None

    status = strict_json(run(["schedule", "status", "--run", run_dir, "--json"], capsys))
    assert status["uses_mu"] is False and status["mu"] is None
    assert ["mu" in line for line in status["history"]] == [False] and "plot" not in status
    table = run(["schedule", "status", "--run", run_dir, "--plot", tmp_path / "chart.txt"], capsys)
    header = next(line for line in table.splitlines() if "epoch" in line and "acc" in line)
    assert "mu" not in header and "strategy uniform" in " ".join(table.split()) and "waiting for training" in table
    chart = (tmp_path / "chart.txt").read_text()
    assert "m" not in chart.split("+")[0] and chart.splitlines()[-1] == (
        "a = accuracy, z = zero-variance groups, u = uniform's (est.), * = several (uniform)"
    )


def test_status_of_gain_keeps_mu(scored, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(["schedule", "init", "--strategy", "gain", "--scores", scored, "--run", run_dir, "--subset-size", "4"], capsys)
    assert "around mu 0.0" in run(["schedule", "step", "--run", run_dir], capsys)
    status = strict_json(run(["schedule", "status", "--run", run_dir, "--json"], capsys))
    assert status["uses_mu"] is True and status["mu"] == 0.0
    assert "mu 0.0 of 7" in run(["schedule", "status", "--run", run_dir], capsys)
    ids = pq.read_table(run_dir / "epoch-0000.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
    feedback = tmp_path / "f.jsonl"
    feedback.write_text("".join(json.dumps({"gc_id": i, "reward": float(i % 2)}) + "\n" for i in ids))
    stepped = run(["schedule", "step", "--run", run_dir, "--feedback", feedback], capsys)
    assert "rollouts, ang " in stepped and " (stored, angle term off), delta +0.0, mu 0.0 -> 0.0\n" in stepped
    assert "epoch 1: 4 prompts around mu 0.0 -> " in stepped  # docs/schedule.md's lines, from gain's own words
    table = run(["schedule", "status", "--run", run_dir], capsys)  # gain's declared columns, in their order
    header = next(line for line in table.splitlines() if "┃ epoch" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == ["epoch", "mu", "acc", "ang", "delta", "mu next"]


def test_status_plot_to_a_png_file(scored, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(["schedule", "init", "--strategy", "gain", "--scores", scored, "--run", run_dir, "--subset-size", "4"], capsys)
    pytest.importorskip("matplotlib")
    run(["schedule", "status", "--run", run_dir, "--plot", tmp_path / "run.png"], capsys)
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_path_and_template_are_shown_as_they_are_and_status_reads_on_a_narrow_terminal(
    scored, gaincurate, tmp_path
):
    """Rich markup would fail on `[/]` after the run is written, and eat `[v2]`. Below 60 columns `status` prints
    each table row as one line of `heading: value` pairs instead of cutting every cell to a letter."""
    template = "[/] \\[{answer}\\]"
    init = gaincurate("schedule", "init", "--scores", scored, "--run", "run[v2]", "--subset-size", "4",
                      "--answer-template", template)  # fmt: skip
    assert init.returncode == 0 and template in init.stdout and "run[v2]: 8 prompts" in init.stdout, init.stderr
    assert gaincurate("schedule", "step", "--run", "run[v2]").returncode == 0
    ids = pq.read_table(tmp_path / "run[v2]/epoch-0000.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
    (tmp_path / "f.jsonl").write_text("".join(json.dumps({"gc_id": i, "reward": float(k <= i % 3)}) + "\n"
                                              for i in ids for k in range(4)))  # fmt: skip
    assert gaincurate("schedule", "step", "--run", "run[v2]", "--feedback", "f.jsonl").returncode == 0
    wide = gaincurate("schedule", "status", "--run", "run[v2]").stdout
    narrow = gaincurate("schedule", "status", "--run", "run[v2]", env={"COLUMNS": "40"}).stdout
    assert "run[v2]: epoch 1, strategy probe" in wide and "run[v2]: epoch 1, strategy probe" in narrow
    assert "…" not in narrow and len(narrow.splitlines()) < len(wide.splitlines()), narrow
    readout = next(line for line in narrow.splitlines() if line.startswith("epoch: 0; groups: 4; aimed at: "))
    assert "; measured: " in readout and "; zero variance: " in readout and readout.endswith("; r: after 30 (0 so far)")


def test_a_run_not_started_says_so_in_its_title_and_in_both_charts(scored, gaincurate, tmp_path):
    from gaincurate.schedule.run.plot import figure

    assert gaincurate("schedule", "init", "--scores", scored, "--run", "run", "--subset-size", "4").returncode == 0
    shown = gaincurate("schedule", "status", "--run", "run", "--plot", "chart.txt")
    title = "run: not started: no epoch drawn yet, strategy probe"  # rich wraps it to the table's width
    assert shown.returncode == 0 and title in " ".join(shown.stdout.split()), shown.stdout
    assert "epoch -1" not in shown.stdout
    said = "no epoch written yet: run `gaincurate schedule step --run run`"
    assert (tmp_path / "chart.txt").read_text() == said + "\n"
    pytest.importorskip("matplotlib")
    status = strict_json(gaincurate("schedule", "status", "--run", "run", "--json").stdout)
    assert [text.get_text() for text in figure(status).texts] == [said]


def test_a_text_chart_past_epoch_99_labels_every_fifth_epoch_apart(scored, gaincurate, tmp_path):
    from gaincurate.schedule.run.plot import text_chart

    assert gaincurate("schedule", "init", "--scores", scored, "--run", "run", "--subset-size", "4").returncode == 0
    status = strict_json(gaincurate("schedule", "status", "--run", "run", "--json").stdout)
    status["history"] = [{"epoch": epoch, "accuracy": 0.5} for epoch in range(120)]
    status["epoch"] = 120
    labels = text_chart(status).splitlines()[-2]
    assert labels.split() == ["epoch", *map(str, range(0, 121, 5))], labels
    assert labels.index(" 100") + 4 == len("epoch ") + 3 * 101  # ends where its column ends, as the others
