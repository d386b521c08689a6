"""The `schedule` commands: flags reach the config, results go to stdout, errors stay one line."""

from __future__ import annotations

import json
import shlex
import sys

import pyarrow.parquet as pq
from typer.testing import CliRunner

from gaincurate.cli.schedule import app
from gaincurate.errors import ConfigError, InputError
from gaincurate.schedule.run.rundir import load_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("init", "step", "run", "status"):
        assert command in result.output


def test_a_strategys_docstring_is_not_what_the_cli_prints(monkeypatch):
    """`schedule strategies` and `schedule status` print the words each strategy declares in its `About`: editing a
    docstring, which speaks to readers of the code, changes neither."""
    from gaincurate.schedule.strategies.contract import draws
    from gaincurate.schedule.strategies.registry import STRATEGIES

    def printed() -> tuple[str, str, dict[str, str]]:
        return invoke("strategies").output, invoke("strategies", "--json").output, {n: draws(c) for n, c in cls_of}

    cls_of = list(STRATEGIES.items())
    before = printed()
    for _, cls in cls_of:
        monkeypatch.setattr(cls, "__doc__", "Edited for readers of the code.\n\nA second paragraph, edited too.")
    assert printed() == before


def test_init_step_status(tmp_path, scores_dir):
    run = tmp_path / "run"
    result = invoke(
        "init", "--scores", scores_dir, "--run", run, "--subset-size", "25%", "--sigma", "10%", "--step-size", "4",
        "--adj-min", "-2", "--adj-max", "30%", "--seed", "9", "--rescore", "window", "--rescore-every", "2",
        "--format", "verl", "--angle-signal", "centered", "--strategy", "length", "--alpha", "1.5", "--beta", "0.4",
        "--reward-max", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from gaincurate.schedule.strategies.gain import resolve_sizes

    config = load_run(run).config
    options, sizes = config.options, resolve_sizes(config.options, 40)
    assert (config.subset_count(40), sizes.sigma, sizes.step_size, sizes.adj_min, sizes.adj_max) == (10, 4, 4, -2, 12)
    assert (config.seed, options.rescore, options.rescore_every, config.format, options.angle_signal) == (
        9, "window", 2, "verl", "centered",
    )  # fmt: skip
    assert (config.strategy, options.alpha, options.beta, config.reward_max) == ("length", 1.5, 0.4, 2.0)

    result = invoke("step", "--run", run)
    assert result.exit_code == 0 and "epoch 0: 10 prompts" in result.output
    ids = pq.read_table(run / "epoch-0000.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
    feedback = tmp_path / "f.jsonl"
    feedback.write_text("".join(json.dumps({"gc_id": i, "reward": 2.0 * (i % 2)}) + "\n" for i in ids))
    result = invoke("step", "--run", run, "--feedback", feedback)
    assert result.exit_code == 0, result.output
    assert "epoch 0: acc" in result.output and "epoch 1: 10 prompts" in result.output

    result = invoke("status", "--run", run, "--json")
    assert result.exit_code == 0
    status = json.loads(result.output)
    assert status["epoch"] == 1 and len(status["history"]) == 1
    assert status["history"][0]["accuracy"] == sum(i % 2 for i in ids) / 10
    assert "plot" not in status and not list(run.glob("status.*")), "status writes a plot only when asked"
    result = invoke("status", "--run", run, "--plot", tmp_path / "chart.txt")
    assert result.exit_code == 0 and "waiting for training" in result.output
    assert f"plot: {tmp_path / 'chart.txt'}" in result.output
    assert (tmp_path / "chart.txt").read_text().splitlines()[-2] == "epoch   0  1"


def test_bad_values_raise_the_project_errors(tmp_path, scores_dir):
    result = invoke("init", "--strategy", "gain", "--scores", scores_dir, "--run", tmp_path / "run", "--beta", "3")
    assert isinstance(result.exception, ConfigError) and "--beta" in str(result.exception)
    assert not (tmp_path / "run").exists()
    result = invoke("step", "--run", tmp_path / "nowhere")
    assert isinstance(result.exception, InputError) and "schedule init" in str(result.exception)
    # dots needs question embeddings, which these scores lack: one line naming the fix, nothing written.
    result = invoke("init", "--scores", scores_dir, "--run", tmp_path / "run", "--strategy", "dots")
    assert isinstance(result.exception, InputError) and "gaincurate score --embed" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_run_command(tmp_path, scores_dir):
    run = tmp_path / "run"
    assert (
        invoke(
            "init",
            "--strategy",
            "gain",
            "--scores",
            scores_dir,
            "--run",
            run,
            "--subset-size",
            "5",
            "--rescore",
            "none",
        ).exit_code
        == 0  # fmt: skip
    )
    script = tmp_path / "trainer.py"
    script.write_text(
        "import json, sys\n"
        "with open(sys.argv[2], 'w') as f:\n"
        "    for i in range(40):\n"
        "        f.write(json.dumps({'gc_id': i, 'correct': i % 4 == 0}) + '\\n')\n"
    )
    command = f"{shlex.quote(sys.executable)} -S {shlex.quote(str(script))} {{epoch_data}} {{feedback_file}}"
    result = invoke("run", "--run", run, "--epochs", "2", "--trainer-cmd", command)
    assert result.exit_code == 0, result.output
    assert "trained epochs: 0, 1" in result.output
    assert load_run(run).schedule.epoch == 2


def test_init_help_shows_the_common_options_first_and_each_strategys_in_its_own_panel():
    """At most 15 options before the strategy panels, and every strategy option in a panel, generated from the
    strategies' `Options` fields (so a new strategy's options appear without a second list)."""
    import typer.main

    from gaincurate.cli.schedule import app
    from gaincurate.cli.schedule_options import LAB_PANEL
    from gaincurate.schedule.strategies.registry import STRATEGIES

    init = typer.main.get_command(app).commands["init"]
    shown = [p for p in init.params if p.param_type_name == "option" and not p.hidden]
    common = [p for p in shown if getattr(p, "rich_help_panel", None) is None]
    assert len(common) + 1 <= 15, [p.name for p in common]  # + --help
    panels = {getattr(p, "rich_help_panel", None) for p in shown} - {None}
    assert {"gain and length options", "dots options", "mopps options", LAB_PANEL} <= panels
    option_names = {p.name for p in shown}
    for cls in STRATEGIES.values():
        assert set(cls.about.options.names()) <= option_names, cls.name


def test_init_lists_every_setting_of_the_strategys_own_options_as_resolved(tmp_path):
    """Each strategy's options come from its options dataclass; init's table shows every one of them as the run
    resolved it (probe's likelihood decided from the scores, not left unset), whatever else the strategy declares."""
    from test_recorded_runs import write_recorded_scores

    from gaincurate.schedule.strategies.registry import KEPT_FOR_COMPARISON, STRATEGIES
    from gaincurate.shards import read_manifest

    scores = write_recorded_scores(tmp_path / "scores")  # embeddings and answers: every strategy can start on it
    for name in sorted(set(STRATEGIES) - KEPT_FOR_COMPARISON):
        run = tmp_path / name
        result = invoke("init", "--scores", scores, "--run", run, "--strategy", name, "--json")
        assert result.exit_code == 0, (name, result.output)
        params = json.loads(result.output)["params"]
        expected = json.loads(json.dumps(load_run(run).config.resolved(read_manifest(scores)).options.to_dict()))
        assert set(expected) <= set(params), (name, set(expected) - set(params))
        # an option left to the data shows as the strategy sized it (gain's sigma in ranks); the others as set
        assert {key: params[key] for key, value in expected.items() if value is not None} == {
            key: value for key, value in expected.items() if value is not None
        }, name
