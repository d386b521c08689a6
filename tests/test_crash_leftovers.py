"""A process killed between two of its file writes leaves a state the same command resumes, and the temporary files
of its killed atomic writes are cleared where the rerun starts. A kill is simulated by a write that raises."""

from __future__ import annotations

import json
import os

import pytest

from gaincurate.rollout import output as rollout_output
from gaincurate.rollout.config import RolloutConfig


class Killed(BaseException):
    """The process died here: nothing after it runs, and no `except Exception` sees it."""


def kill_at(monkeypatch, name: str, *, after: bool = False) -> None:
    """Make the first `os.replace` onto a file called `name` die before (or right after) it renames."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) != name:
            return real(src, dst, *args, **kwargs)
        monkeypatch.setattr(os, "replace", real)
        if after:
            real(src, dst, *args, **kwargs)
        raise Killed(name)

    monkeypatch.setattr(os, "replace", replace)


def leave_leftover(path) -> None:
    """What `atomic_write` leaves when its process is killed before the rename: `.NAME.XXXX.tmp` beside `path`."""
    (path.parent / f".{path.name}.k1ll3d.tmp").write_bytes(b"half")


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def test_rollout_killed_before_its_sidecar_is_resumed_from_nothing(tmp_path, monkeypatch):
    out, config = tmp_path / "r.jsonl", RolloutConfig(scores="scores", out="r.jsonl")
    settings = {"samples": 4}
    kill_at(monkeypatch, "r.jsonl.rollout.json")
    with pytest.raises(Killed):
        rollout_output.start_output(out, resuming=False, keep_bytes=0, settings=settings, config=config)
    monkeypatch.undo()
    leave_leftover(rollout_output.sidecar(out))
    assert out.read_bytes() == b"" and leftovers(tmp_path)
    assert rollout_output.check_settings(out, settings, overwrite=False) is False  # not refused: nothing was written
    rollout_output.start_output(out, resuming=False, keep_bytes=0, settings=settings, config=config)
    assert leftovers(tmp_path) == [] and rollout_output.sidecar(out).is_file()
    out.write_text("x\n")
    rollout_output.sidecar(out).unlink()
    with pytest.raises(Exception, match="has no r.jsonl.rollout.json"):  # a file with lines stays refused
        rollout_output.check_settings(out, settings, overwrite=False)


def gaincurate(args: list[object]) -> tuple[int, str]:
    """`gaincurate ARGS` in this process on one torch thread: its exit code and what it printed to stderr."""
    import contextlib
    import io

    import torch

    from gaincurate.cli import main

    threads, err = torch.get_num_threads(), io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            main([*map(str, args), "--threads", "1"])
        code = 0
    except SystemExit as done:
        code = done.code or 0
    finally:
        torch.set_num_threads(threads)
    return code, " ".join(err.getvalue().split())


def stop_at(monkeypatch, call: str, name: str, error: BaseException) -> None:
    """Make `os.<call>` on a file called `name` do its work and then raise `error` (a Ctrl-C, or a kill)."""
    real = getattr(os, call)

    def then_stop(*args, **kwargs):
        result = real(*args, **kwargs)
        if os.path.basename(args[-1] if call == "replace" else args[0]) == name:
            monkeypatch.setattr(os, call, real)
            raise error
        return result

    monkeypatch.setattr(os, call, then_stop)


@pytest.fixture()
def scoring(tiny_llama, problems_file, tmp_path):
    out = tmp_path / "s"
    args = ["score", problems_file, "--model", tiny_llama, "--dtype", "float32", "--device", "cpu", "--out", out,
            "--shard-rows", "2", "--batch-tokens", "64", "--quiet"]  # fmt: skip
    return out, args


@pytest.mark.parametrize("where", ["manifest.json", "shard-00001.arrow"])
@pytest.mark.parametrize("error", [KeyboardInterrupt, Killed], ids=["ctrl-c", "kill"])
def test_overwrite_stopped_while_deleting_the_old_run_is_resumed_by_the_same_command(where, error, scoring,
                                                                                     monkeypatch):  # fmt: skip
    out, args = scoring
    assert gaincurate([*args, "--layer", "1"])[0] == 0
    stop_at(monkeypatch, "unlink", where, error())
    if error is Killed:
        with pytest.raises(Killed):
            gaincurate([*args, "--overwrite"])
    else:  # the old run's shards are not this run's work
        assert gaincurate([*args, "--overwrite"]) == (130, f"gaincurate: {NOTHING_KEPT}")
    monkeypatch.undo()
    assert gaincurate([*args, "--overwrite"])[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["layer"] != 1


NOTHING_KEPT = ("interrupted before the first shard (2 rows) was complete, so nothing is kept and the same command "
                "starts over; a smaller --shard-rows keeps work more often")  # fmt: skip


def test_overwrite_interrupted_says_to_resume_without_it_and_a_resume_clears_leftovers(scoring, monkeypatch):
    out, args = scoring
    assert gaincurate([*args, "--layer", "1"])[0] == 0
    stop_at(monkeypatch, "replace", "shard-00001.arrow", KeyboardInterrupt())
    code, said = gaincurate([*args, "--overwrite"])
    monkeypatch.undo()
    assert code == 130 and "2 of 4 shards" in said and "without --overwrite" in said, said
    for name in ("manifest.json", "shard-00002.arrow"):
        leave_leftover(out / name)
    assert gaincurate(args)[0] == 0
    assert json.loads((out / "manifest.json").read_text())["timings"]["shards_resumed"] == 2
    assert leftovers(out) == []


def test_merge_clears_the_leftovers_of_killed_parts(scoring):
    out, args = scoring
    for index in (0, 1):
        assert gaincurate([*args, "--num-shards", 2, "--shard-index", index])[0] == 0
    for name in ("manifest.json", "shard-00001.arrow", "part-00000-of-00002.json"):
        leave_leftover(out / name)
    from gaincurate.scoring.merge import merge

    assert merge(out)["complete"] and leftovers(out) == []
