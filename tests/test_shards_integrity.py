"""The scores directory's integrity in the library: checksums, confined shard names, the lock, the first
manifest, the already-complete path, config types, the GGUF conversion cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gaincurate.errors import ConfigError, InputError, ModelError
from gaincurate.fileio import atomic_write, create_exclusive
from gaincurate.model import ModelSource, _from_gguf, gguf_cache_folder, load_config
from gaincurate.scoring import score
from gaincurate.scoring.config import RunOptions, ScoreConfig
from gaincurate.scoring.output import OutputLock
from gaincurate.shards import read_manifest, read_scores


def tiny_config(model: Path, dataset: Path, **changes) -> ScoreConfig:
    return ScoreConfig(dataset=str(dataset), model=str(model), dtype="float32", device="cpu", batch_tokens=256,
                       **changes)  # fmt: skip


@pytest.fixture()
def scored(tiny_llama, problems_file, tmp_path) -> Path:
    out = tmp_path / "scores"
    score(tiny_config(tiny_llama, problems_file), RunOptions(out=str(out), shard_rows=3))
    return out


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("limit", "ten", '--limit must be a whole number or null; got "ten"'),
        ("layer", 1.5, "--layer must be a whole number; got 1.5"),
        ("inter_weight", True, "--inter-weight must be a number; got true"),
        ("embed", "yes", '--embed must be true or false; got "yes"'),
        ("few_shot", "one", '--few-shot must be a list of tables; got "one"'),
        ("model", 7, "--model must be a string or null; got 7"),
    ],
)
def test_config_values_of_the_wrong_type_are_one_line(field, value, message):
    with pytest.raises(ConfigError) as raised:
        ScoreConfig(**{field: value})
    assert str(raised.value) == message


def test_run_options_are_checked_and_an_int_weight_fingerprints_like_a_float():
    with pytest.raises(ConfigError, match="^threads must be at least 1; got 0"):  # named as Python spells it
        RunOptions(threads=0)
    with pytest.raises(ConfigError, match='--shard-rows must be a whole number or null; got "8"'):
        RunOptions(shard_rows="8")
    assert ScoreConfig(inter_weight=1).result_fields() == ScoreConfig(inter_weight=1.0).result_fields()


def test_a_damaged_or_missing_shard_is_refused_by_name(scored):
    manifest = read_manifest(scored)
    assert set(manifest["checksums"]) == set(manifest["shards"]) and manifest["shard_rows"] == 3
    shard = scored / "shard-00001.arrow"
    data = bytearray(shard.read_bytes())
    data[-20] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"shard .*shard-00001\.arrow is damaged"):
        read_scores(scored)
    shard.unlink()
    with pytest.raises(InputError, match=r"shard-00001\.arrow is missing"):
        read_scores(scored)


@pytest.mark.parametrize("name", ["/etc/passwd", "../../x.arrow", "shard-1.arrow", "sub/shard-00000.arrow", 3])
def test_shard_names_are_confined_to_the_directory(name, scored):
    manifest = read_manifest(scored)
    (scored / "manifest.json").write_text(json.dumps({**manifest, "shards": [name]}))
    with pytest.raises(InputError, match="as a shard; shards are shard-NNNNN.arrow files inside"):
        read_scores(scored)


def test_a_finished_run_loads_neither_tokenizer_nor_model(scored, tiny_llama, problems_file, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished run must not load this")

    monkeypatch.setattr("gaincurate.scoring.prepare.load_tokenizer", refuse)
    monkeypatch.setattr("gaincurate.scoring.prepare.load_in", refuse)
    before = (scored / "manifest.json").read_bytes()
    manifest = score(tiny_config(tiny_llama, problems_file), RunOptions(out=str(scored)))
    assert manifest["already_complete"] is True and (scored / "manifest.json").read_bytes() == before


def test_a_run_failing_before_any_shard_leaves_no_directory(tiny_llama, problems_file, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise ModelError("cannot load model: broken")

    monkeypatch.setattr("gaincurate.scoring.prepare.load_in", fail)
    out = tmp_path / "scores"
    with pytest.raises(ModelError):
        score(tiny_config(tiny_llama, problems_file), RunOptions(out=str(out)))
    assert not out.exists()


def test_the_output_lock_admits_one_writer_or_many_parts(tmp_path):
    with OutputLock(tmp_path, shared=False):
        for shared in (False, True):
            with pytest.raises(ConfigError, match="being written by another `gaincurate score` run"):
                OutputLock(tmp_path, shared=shared).acquire()
        with pytest.raises(ConfigError):
            OutputLock(tmp_path, shared=True).probe()
    with OutputLock(tmp_path, shared=True), OutputLock(tmp_path, shared=True), pytest.raises(ConfigError):
        OutputLock(tmp_path, shared=False).acquire()
    OutputLock(tmp_path, shared=False).acquire().release()  # a released lock is free again


def test_exclusive_creation_and_failed_writes_leave_the_target_alone(tmp_path):
    target = tmp_path / "manifest.json"
    assert create_exclusive(target, b"first") and not create_exclusive(target, b"second")
    assert target.read_bytes() == b"first"

    def full(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    with pytest.raises(OSError) as raised:
        atomic_write(target, full)
    assert (raised.value.errno, raised.value.filename) == (28, str(target))
    assert target.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


class _Converted:
    def save_pretrained(self, folder: Path) -> None:
        (Path(folder) / "weights.txt").write_text("weights")


def test_a_gguf_is_converted_once_and_again_when_its_copy_breaks(tmp_path, monkeypatch):
    monkeypatch.setenv("GAINCURATE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + bytes(60))
    source = ModelSource("gguf", str(tmp_path), "m.gguf", "m.gguf")
    conversions = []

    def convert() -> _Converted:
        conversions.append(1)
        return _Converted()

    def load_folder(folder: str) -> str:
        text = (Path(folder) / "weights.txt").read_text()
        if text != "weights":
            raise ValueError("unreadable")
        return text

    assert isinstance(_from_gguf(source, "model-float32", convert, load_folder), _Converted)
    assert _from_gguf(source, "model-float32", convert, load_folder) == "weights" and len(conversions) == 1
    (gguf_cache_folder(source) / "model-float32" / "weights.txt").write_text("garbage")
    assert isinstance(_from_gguf(source, "model-float32", convert, load_folder), _Converted)
    assert _from_gguf(source, "model-float32", convert, load_folder) == "weights" and len(conversions) == 2
    monkeypatch.setenv("GAINCURATE_CACHE_DIR", str(tmp_path / "m.gguf"))  # a file: the cache cannot be written
    assert isinstance(_from_gguf(source, "model-float32", convert, load_folder), _Converted)


def test_a_gguf_config_is_read_once_then_from_its_copy(tmp_path, monkeypatch):
    """The tuning reads the model's config on every run; a GGUF's means parsing all of the file's metadata."""
    from transformers import AutoConfig, LlamaConfig

    from gaincurate.scoring.dtype import model_shapes

    monkeypatch.setenv("GAINCURATE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + bytes(60))
    source = ModelSource("gguf", str(tmp_path), "m.gguf", "m.gguf")
    read_folder, parsed = AutoConfig.from_pretrained, []

    def from_pretrained(name: str, gguf_file: str | None = None, **kwargs):
        if gguf_file is None:
            return read_folder(name, **kwargs)
        parsed.append(gguf_file)
        return LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4)

    monkeypatch.setattr(AutoConfig, "from_pretrained", staticmethod(from_pretrained))
    first, second = load_config(source), load_config(source)
    assert parsed == ["m.gguf"] and (gguf_cache_folder(source) / "config" / "config.json").is_file()
    assert model_shapes(second) == model_shapes(first) and second.num_hidden_layers == 3


def test_an_unfinished_directory_says_how_to_finish_it_a_single_run_s_or_an_array_job_s(scored):
    manifest = read_manifest(scored)
    (scored / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(InputError, match="re-run the same `gaincurate score` command to finish it"):
        read_scores(scored)
    (scored / "part-00000-of-00002.json").write_text("{}")  # an array job's part marker
    with pytest.raises(InputError, match=r"finish every --shard-index part, then `gaincurate merge` it"):
        read_scores(scored)
