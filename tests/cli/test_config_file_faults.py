"""`--config FILE` and `schedule init`'s checks as a user meets them: through the console script, one line each.

A flag beats the file even when the two set one setting by different options (`--reward-range` against a file's
`reward_max`); a file with a byte-order mark, an upper-case `.TOML` and a pair given as a list (state.json's form)
are read; a folder, a bare `null`, two spellings of one key and a setting no strategy reads are refused in words.
"""

from __future__ import annotations

import json

import pytest


def init(gaincurate, scored, tmp_path, *args):
    return gaincurate("schedule", "init", "--scores", scored, "--run", tmp_path / "run", *args)


@pytest.mark.parametrize(
    ("file", "text", "flags", "rewards"),
    [
        ("max.toml", "reward_max = 2\n", ["--reward-range", "0,1"], (0.0, 1.0)),
        ("range.toml", 'reward_range = "-1,1"\n', ["--reward-max", "2"], (-1.0, 2.0)),
        ("range-list.toml", "reward_range = [-1, 1]\n", [], (-1.0, 1.0)),
    ],
    ids=["flag-range-over-file-max", "flag-max-over-file-range", "range-as-a-list"],
)
def test_flags_override_the_file_across_the_reward_options(gaincurate, scored, tmp_path, file, text, flags, rewards):
    (tmp_path / file).write_text(text)
    result = init(gaincurate, scored, tmp_path, "--config", tmp_path / file, *flags, "--json")
    assert result.returncode == 0, result.stderr
    params = json.loads(result.stdout)["params"]
    assert (params["reward_min"], params["reward_max"]) == rewards


def test_two_flags_that_disagree_are_still_refused(gaincurate, scored, tmp_path, error_line):
    result = init(gaincurate, scored, tmp_path, "--reward-range", "0,1", "--reward-max", "2")
    assert result.returncode == 1 and "disagree; pass one of them" in error_line(result)


@pytest.mark.parametrize(
    ("name", "content"),
    [("bom.json", b'\xef\xbb\xbf{"json": true}'), ("bom.toml", b"\xef\xbb\xbfjson = true\n"),
     ("upper.TOML", b"json = true\n")],
    ids=["json-with-bom", "toml-with-bom", "upper-case-suffix"],
)  # fmt: skip
def test_a_byte_order_mark_and_an_upper_case_suffix_are_read(gaincurate, tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    result = gaincurate("schedule", "strategies", "--config", tmp_path / name)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)  # `json = true` took effect


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("folder", None, "--config folder is a folder; pass a JSON or TOML file"),
        ("null.json", "null", "it holds null"),
        ("text.json", '"x"', "it holds a string"),
        ("dup.toml", "subset-size = 10\nsubset_size = 20\n", "sets subset_size twice (subset-size and subset_size)"),
        ("dup.json", '{"subset_size": 10, "subset-size": 20}', "sets subset_size twice (subset_size and subset-size)"),
        ("band.json", '{"band": 0.5}', "band must be two pass rates LO,HI such as 0.1,0.9, as text or a list of two"),
        ("prior.toml", "prior = [1, 2, 3]\n", "prior must be two positive numbers A,B such as 1,1, as text or a list"),
    ],
    ids=["folder", "null", "string", "dup-toml", "dup-json", "band-number", "prior-three"],
)
def test_config_file_faults_are_one_line_in_the_files_words(
    gaincurate, scored, tmp_path, error_line, name, content, expected
):
    (tmp_path / name).mkdir() if content is None else (tmp_path / name).write_text(content)
    result = init(gaincurate, scored, tmp_path, "--config", name)
    assert result.returncode == (2 if name.startswith(("band", "prior")) else 1)  # a bad value's exit, 2
    assert expected in error_line(result)
    assert not (tmp_path / "run").exists()


def test_a_pair_given_as_a_list_is_the_pair(gaincurate, scored, tmp_path):
    """The list state.json stores for `band` and `prior` is taken back as a config value."""
    (tmp_path / "pairs.toml").write_text('strategy = "mopps"\nband = [0.2, 0.8]\nprior = [1, 2]\njson = true\n')
    result = init(gaincurate, scored, tmp_path, "--config", tmp_path / "pairs.toml")
    assert result.returncode == 0, result.stderr
    params = json.loads(result.stdout)["params"]
    assert (params["band"], params["prior"]) == ([0.2, 0.8], [1.0, 2.0])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--strategy", "probe", "--rescore-nproc", "4"],
         "--rescore-nproc is a gain or length option; pass --strategy gain or drop --rescore-nproc"),
        (["--strategy", "gain", "--rescore", "none", "--rescore-nproc", "4"],
         "--rescore-nproc has nothing to re-score with --rescore none; drop it, or pass --rescore subset"),
        (["--strategy", "gain", "--rescore", "none", "--rescore-every", "5"],
         "--rescore-every has nothing to re-score with --rescore none; drop it, or pass --rescore subset"),
        (["--explore-min", "0.1"],
         "--explore-min is a greso or --skip-zero-variance option; pass --strategy greso or --skip-zero-variance, "
         "or drop --explore-min"),
        (["--subset-size", "2", "--subset-multiple", "10"],
         "the 8 prompts are fewer than one batch of --subset-multiple 10; lower it"),
    ],
    ids=["nproc-probe", "nproc-rescore-none", "every-rescore-none", "explore-min-offers-the-switch", "batch-over-pool"],
)  # fmt: skip
def test_init_refuses_what_no_setting_reads_in_one_line(gaincurate, scored, tmp_path, error_line, flags, expected):
    result = init(gaincurate, scored, tmp_path, *flags)
    assert result.returncode == 1 and error_line(result) == f"gaincurate: error: {expected}"
    assert not (tmp_path / "run").exists()


def test_explore_min_with_the_switch_is_taken(gaincurate, scored, tmp_path):
    result = init(gaincurate, scored, tmp_path, "--skip-zero-variance", "--explore-min", "0.1")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["--num-shards", "0", "--shard-index", "0"], 2, "--num-shards 0 is not valid: input should be greater"),
        (["--num-shards", "-2", "--shard-index", "0"], 2, "--num-shards -2 is not valid: input should be greater"),
        (["--config", "shards.json"], 2, "--config shards.json: num_shards must be at least 1; got 0"),
    ],
    ids=["zero", "negative", "from-a-file"],
)
def test_score_refuses_fewer_than_one_shard(gaincurate, tmp_path, error_line, args, code, expected):
    (tmp_path / "shards.json").write_text('{"num_shards": 0, "shard_index": 0}')
    result = gaincurate("score", "--out", "s", "--limit", "3", *args)
    assert result.returncode == code and expected in error_line(result)


def test_score_takes_the_keys_every_command_takes(tiny_llama, gaincurate, tmp_path):
    """`json = true` (and the `--no-...` switches, by their long names) in a `score --config` file."""
    from helpers import PROBLEMS, write_jsonl

    dataset = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS[:2])
    (tmp_path / "score.toml").write_text("json = true\nno_few_shot = true\n")
    args = ["score", dataset, "--model", tiny_llama, "--device", "cpu", "--dtype", "float32", "--batch-tokens", "256"]
    result = gaincurate(*args, "--out", tmp_path / "scores", "--config", tmp_path / "score.toml")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["config"]["few_shot"] == []


def test_status_reports_the_sizes_init_resolved(gaincurate, scored, tmp_path):
    """`status --json` params give gain's sizes in ranks, as `init` did, not as stored (None)."""
    started = init(gaincurate, scored, tmp_path, "--strategy", "gain", "--json")
    assert started.returncode == 0, started.stderr
    status = gaincurate("schedule", "status", "--run", tmp_path / "run", "--json")
    assert status.returncode == 0, status.stderr
    sizes = ("sigma", "step_size", "adj_min", "adj_max", "sweep_rate")
    resolved, shown = json.loads(started.stdout)["params"], json.loads(status.stdout)["params"]
    assert {key: shown[key] for key in sizes} == {key: resolved[key] for key in sizes}
    assert all(isinstance(shown[key], float) for key in sizes)
