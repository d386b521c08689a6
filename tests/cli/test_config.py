"""`--config FILE` on every command: defaults, then the file, then flags; one check of keys and value types."""

from __future__ import annotations

import json

import pytest
import typer

from gaincurate.cli import app
from gaincurate.cli.score import score_config_file
from gaincurate.scoring.config import RunOptions, ScoreConfig, manifest_config


def leaf_commands(command=None, path="gaincurate"):
    command = command or typer.main.get_command(app)
    for name, sub in getattr(command, "commands", {}).items():
        yield from leaf_commands(sub, f"{path} {name}") if hasattr(sub, "commands") else [(f"{path} {name}", sub)]


def test_every_command_takes_config_and_json():
    passed_through = []
    for path, command in leaf_commands():
        if command.context_settings.get("allow_extra_args"):
            # `gaincurate example NAME ...` hands every later argument to the script it runs: a --config or --json
            # there is the script's, so the command cannot claim them.
            passed_through.append(path.strip())
            continue
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert {"--config", "--json"} <= options, path
    assert passed_through == ["gaincurate example"]


def test_config_values_are_defaults_and_flags_override_them(scored, gaincurate, tmp_path):
    (tmp_path / "show.json").write_text(json.dumps({"top": 1, "json": True, "against": ["level"]}))
    summary = json.loads(gaincurate("show", scored, "--config", tmp_path / "show.json").stdout)
    assert len(summary["top"]) == 1 and set(summary["spearman"]) == {"question_tokens", "level"}
    (tmp_path / "show.toml").write_text("top = 1\njson = true\n")
    summary = json.loads(gaincurate("show", scored, "--config", tmp_path / "show.toml", "--top", "3").stdout)
    assert len(summary["top"]) == 3


def test_schedule_init_reads_its_options_from_the_file(scored, gaincurate, tmp_path):
    from gaincurate.schedule.run.rundir import load_run

    (tmp_path / "init.toml").write_text(f'scores = "{scored}"\nstrategy = "uniform"\nsubset-size = 4\nseed = 7\n')
    result = gaincurate(
        "schedule", "init", "--run", tmp_path / "run", "--config", tmp_path / "init.toml", "--seed", "8"
    )
    assert result.returncode == 0, result.stderr
    config = load_run(tmp_path / "run").config
    assert (config.strategy, config.subset_size, config.seed) == ("uniform", 4, 8)


BAD_FILES = {
    "unknown-key": ("c.json", '{"top": 2, "tpo": 3}', "unknown key(s) tpo; known: against, json, scores_dir, top"),
    "wrong-type": ("c.json", '{"top": "many"}', 'top must be a whole number; got "many"'),
    "fraction-for-int": ("c.toml", "top = 2.5", "top must be a whole number; got 2.5"),
    "toml-date": ("c.toml", "top = 1979-05-27", "top must be a whole number; got 1979-05-27 (a TOML date)"),
    "toml-time": ("c.toml", "top = 12:30:00", "top must be a whole number; got 12:30:00 (a TOML time)"),
    "toml-datetime": ("c.toml", "top = 1979-05-27T07:32:00", "top must be a whole number; got 1979-05-27T07:32:00 (a"),
    "toml-dates": ("c.toml", "against = [1979-05-27]", 'against must be a list of strings or null; got ["1979-05-27"]'),
    "not-a-table": ("c.json", "[1, 2]", "must hold a table of option names and values; it holds a list"),
    "bad-json": ("c.json", '{"top": 2,}', "is not valid JSON"),
    "bad-toml": ("c.toml", "top = = 2", "is not valid TOML"),
    "not-utf8": ("c.json", b'{"against": ["\xff"]}', "is not UTF-8 text"),
    "deeply-nested": ("c.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "missing": ("absent.json", None, "does not exist"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_config_file_is_one_line_naming_the_key(case, scored, gaincurate, error_line, tmp_path):
    name, content, message = BAD_FILES[case]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = gaincurate("show", scored, "--config", path)
    # A value of the wrong type is a bad option value, exit 2 as from a flag; a file that cannot be read as a table
    # of known keys is a bad file, 1.
    assert result.returncode == (2 if " must be " in message else 1), result.stderr
    line = error_line(result)
    assert f"--config {path}" in line and message in line


def test_score_config_types_are_checked_before_anything_runs(gaincurate, error_line, tmp_path):
    (tmp_path / "score.json").write_text(json.dumps({"limit": "ten", "out": str(tmp_path / "out")}))
    result = gaincurate("score", "--config", tmp_path / "score.json")
    assert result.returncode == 2
    assert 'limit must be a whole number or null; got "ten"' in error_line(result)
    (tmp_path / "score.json").write_text(json.dumps({"few_shot": [{"question": "q", "answer": 2}]}))
    result = gaincurate("score", "--config", tmp_path / "score.json")
    assert result.returncode == 2 and "few_shot must be a list of tables" in error_line(result)
    assert not (tmp_path / "out").exists()


def test_a_manifest_config_is_a_score_config_file(tmp_path):
    config, options = ScoreConfig(layer=-2, few_shot=(), limit=10), RunOptions(out="elsewhere", overwrite=True)
    (tmp_path / "manifest-config.json").write_text(json.dumps(manifest_config(config, options)))
    values = score_config_file(tmp_path / "manifest-config.json")
    assert values == {**config.to_dict(), **options.replace(num_shards=None, shard_index=None).to_dict()}


def test_quiet_from_a_score_config_file_quiets_the_run(tiny_llama, gaincurate, tmp_path):
    """`quiet = true` in the file is the `--quiet` flag: no stage lines or progress on stderr."""
    from helpers import PROBLEMS, write_jsonl

    dataset = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS[:2])
    (tmp_path / "score.toml").write_text("quiet = true\n")
    args = ["score", dataset, "--model", tiny_llama, "--device", "cpu", "--dtype", "float32", "--batch-tokens", "256"]
    result = gaincurate(*args, "--out", tmp_path / "scores", "--config", tmp_path / "score.toml")
    assert result.returncode == 0 and result.stderr == "", result.stderr
