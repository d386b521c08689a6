"""End to end under the Triton interpreter: `score --backend triton` equals `--backend torch`.

Runs in the kernel process (`TRITON_INTERPRET=1 pytest -m triton`), where Triton kernels run on CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gaincurate.scoring import score
from gaincurate.scoring.config import RunOptions, ScoreConfig
from gaincurate.shards import read_scores

pytestmark = pytest.mark.triton


@pytest.mark.parametrize("prefix_cache", [True, False], ids=["prefix-cache", "full-forward"])
def test_triton_backend_scores_equal_torch_backend(prefix_cache, tiny_llama, problems_file, tmp_path):
    common = dict(dataset=str(problems_file), model=str(tiny_llama), dtype="float32", device="cpu",
                  prefix_cache=prefix_cache)  # fmt: skip
    triton_manifest = score(ScoreConfig(backend="triton", **common), RunOptions(out=str(tmp_path / "triton")))
    score(ScoreConfig(backend="torch", **common), RunOptions(out=str(tmp_path / "torch")))
    assert triton_manifest["backend"] == "triton"
    got, expected = read_scores(tmp_path / "triton"), read_scores(tmp_path / "torch")
    for column in ("gc_intra", "gc_inter", "gc_score"):
        np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy(), atol=1e-4, equal_nan=True)
