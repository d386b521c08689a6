"""Every bench table in docs/benchmarks.md is exactly what `gaincurate bench curriculum --report DIR` prints.

A published table sits between `<!-- report: docs/results/NAME -->` and `<!-- /report -->`; its folder keeps the
bench's config, points and costs, from which the summary and the table are recomputed here. The folder's
summary.json must equal the recomputation too, so neither a table nor a kept summary can drift from the runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gaincurate.lab.benchmarks.curriculum.report import report

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks.md"
BLOCK = re.compile(r"<!-- report: (?P<folder>\S+) -->\n(?P<table>.*?)<!-- /report -->", re.DOTALL)


def published() -> list[tuple[str, str]]:
    return [(m["folder"], m["table"]) for m in BLOCK.finditer(DOC.read_text())]


def test_every_results_folder_is_published_and_every_published_table_has_its_folder():
    folders = sorted(str(p.parent.relative_to(ROOT)) for p in (ROOT / "docs" / "results").glob("*/bench.json"))
    assert folders, "docs/results/ holds no bench"
    assert sorted(folder for folder, _ in published()) == folders


@pytest.mark.parametrize("folder,table", published(), ids=[folder for folder, _ in published()])
def test_a_published_table_re_derives_from_its_results(folder, table):
    summary, printed = report(ROOT / folder)
    assert table == printed
    kept = json.loads((ROOT / folder / "summary.json").read_text())
    kept.pop("initial_sha256", None)
    assert json.loads(json.dumps(summary)) == kept


SCALE_BLOCK = re.compile(r"<!-- scale: (?P<file>\S+) -->\n(?P<table>.*?)<!-- /scale -->", re.DOTALL)


def test_every_published_scale_table_re_derives_from_its_result_file():
    from gaincurate.lab.benchmarks.scale import result_lines

    blocks = list(SCALE_BLOCK.finditer(DOC.read_text()))
    assert blocks, "docs/benchmarks.md publishes no scale bench table"
    for block in blocks:
        result = json.loads((ROOT / block["file"]).read_text())
        assert block["table"] == "\n".join(result_lines(result)) + "\n", block["file"]
