"""Scoring: dataset rows -> prompts -> truncated forward -> segment sums -> Arrow shards + manifest.

Run it with `gaincurate score [DATASET] --out DIR`, or from Python with
`score(ScoreConfig(...), RunOptions(out=DIR))`. The steps live in their own modules:

    prepare.py   load rows, tokenizer and model; fingerprint the run; plan its shards
    output.py    the scores folder on disk: its layout, the lock, every manifest write, the fingerprint check
    engine.py    the batched `Scorer`: shared-prefix cache, length packing, one truncated forward per batch
    run.py       `score`: the shard loop, resumable, split across torchrun ranks or array parts
    finalize.py  the manifest: its first form, then diagnostics, timings and shard checksums on completion
    rescore.py   `rescore`: chosen rows again, with a newer checkpoint or a live model in a trainer
    merge.py     `merge`: complete an array job's manifest once every part has run

Callers import from here (`from gaincurate.scoring import score`); `rescore` is looked up on this package
at call time (`scoring.rescore(...)`), so tests can replace it.
"""

from gaincurate.scoring.merge import merge
from gaincurate.scoring.rescore import rescore
from gaincurate.scoring.run import score

__all__ = ["merge", "rescore", "score"]
