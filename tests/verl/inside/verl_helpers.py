"""Builders for the tests inside verl's environment: the sample's scores directory, the schedule CLI, and the
verl overrides of docs/verl.md's commands.

No model is run: the scores are made up, the prompts and answers are the bundled sample's real ones.
"""

import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
from typer.testing import CliRunner

from gaincurate import shards
from gaincurate.fileio import atomic_write_json

SUBSET = 64  # rows per epoch: a multiple of the batch size the tests use
EMBEDDING_WIDTH = 16
SYSTEM_PROMPT = "Put the final answer in \\boxed{}."

DOC = Path(__file__).parents[3] / "docs" / "verl.md"
LEGACY_HEADING = "## verl 0.5 - 0.7.1"
OVERRIDE = re.compile(r"""(?:^|(?<=[\s"']))(\+{0,2}[a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_]+)+)=([^\s"']*)""")


def bash_blocks() -> list[tuple[bool, str]]:
    """(in the legacy section, text) of each ```bash block."""
    blocks: list[tuple[bool, str]] = []
    legacy, block = False, None
    for line in DOC.read_text().splitlines():
        if block is not None:
            if line.startswith("```"):
                blocks.append((legacy, "\n".join(block)))
                block = None
            else:
                block.append(line)
        elif line.startswith("```bash"):
            block = []
        elif line.startswith("## "):
            legacy = line.startswith(LEGACY_HEADING)
    return blocks


def overrides(text: str) -> list[str]:
    """The verl overrides in one block, with shell placeholders replaced by plain values."""
    found = []
    for key, value in OVERRIDE.findall(text):
        if value.startswith("$(("):
            value = "1"
        elif "{" in value or "$" in value or value in ("MODEL", ""):
            value = "/tmp/placeholder"
        found.append(f"{key}={value}")
    return found


def one_launch_overrides() -> list[str]:
    """The verl overrides of docs/verl.md's one-launch command (the block that sets data.custom_cls)."""
    [text] = [text for _, text in bash_blocks() if "data.custom_cls.path=" in text]
    return overrides(text)


def write_sample_scores(directory: Path) -> Path:
    """A complete scores directory over the bundled sample: real problems and answers, made-up scores and
    embeddings (dots, the default strategy, reads them)."""
    text = resources.files("gaincurate").joinpath("assets/math_sample.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    n = len(rows)
    rng = np.random.default_rng(0)
    inputs = pa.table({"problem": [r["problem"] for r in rows], "answer": [str(r["answer"]) for r in rows]})
    scores = rng.uniform(0.5, 2.0, n)
    columns = {
        "gc_id": pa.array(np.arange(n), pa.int64()),
        "gc_intra": pa.array(scores / 2),
        "gc_inter": pa.array(scores / 2),
        "gc_score": pa.array(scores),
        "gc_question_tokens": pa.array(rng.integers(5, 60, n), pa.int32()),
        "gc_context_tokens": pa.array(np.full(n, 20), pa.int32()),
        "gc_truncated": pa.array(np.zeros(n, dtype=bool)),
        "gc_status": pa.array(["ok"] * n),
        "gc_embedding": pa.array(
            list(rng.normal(size=(n, EMBEDDING_WIDTH)).astype(np.float16)), shards.EMBEDDING_FIELD.type
        ),
    }
    schema = shards.output_schema(inputs.schema, embed=True)
    given = dict(zip(inputs.column_names, inputs.columns, strict=True)) | columns
    # Columns this test does not fill (the prompt/answer hashes, when the shards have them) stay null.
    arrays = [given.get(field.name, pa.nulls(n, field.type)) for field in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    directory.mkdir(parents=True)
    shards.write_shard(directory / shards.shard_name(0), table)
    manifest = {
        "format_version": shards.FORMAT_VERSION,
        "complete": True,
        "rows": n,
        "shards": [shards.shard_name(0)],
        "config": {
            "prompt_column": "problem",
            "answer_column": "answer",
            "system_prompt": SYSTEM_PROMPT,
            "few_shot": [],
            "chat_template": True,
        },
        "dataset": {"name": "gaincurate/math_sample", "fingerprint": f"math-sample-{n}"},
        "debias": None,
    }
    atomic_write_json(directory / shards.MANIFEST, manifest)
    return directory


def schedule(*args: str) -> str:
    """`gaincurate schedule ARGS`, through the real command line."""
    from gaincurate.cli.schedule import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def verl_version() -> tuple[int, ...]:
    import verl

    return tuple(int(part) for part in verl.__version__.split(".")[:3] if part.isdigit())
