"""Every bench table in docs/benchmarks.md and its history is exactly what `bench curriculum --report DIR` prints.

A published table sits between `<!-- report: docs/results/NAME -->` and `<!-- /report -->`; its folder keeps the
bench's config, points and costs, from which the summary and the table are recomputed here. The folder's
summary.json must equal the recomputation too, so neither a table nor a kept summary can drift from the runs. The
determinism leg re-derives them again on numpy's, torch's and the BLAS's narrowest paths: a kept float must be the
same on every CPU.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gaincurate.lab.benchmarks.curriculum.report import report

ROOT = Path(__file__).resolve().parents[2]
# The standing verdicts, and the history page that keeps every run's section with its tables.
DOCS = (ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmark-history.md")
BLOCK = re.compile(r"<!-- report: (?P<folder>\S+) -->\n(?P<table>.*?)<!-- /report -->", re.DOTALL)


def pages() -> str:
    return "".join(page.read_text() for page in DOCS)


def published() -> list[tuple[str, str]]:
    return [(m["folder"], m["table"]) for m in BLOCK.finditer(pages())]


def test_every_results_folder_is_published_and_every_published_table_has_its_folder():
    folders = sorted(str(p.parent.relative_to(ROOT)) for p in (ROOT / "docs" / "results").glob("*/bench.json"))
    assert folders, "docs/results/ holds no bench"
    assert sorted(folder for folder, _ in published()) == folders


@pytest.mark.determinism
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

    blocks = list(SCALE_BLOCK.finditer(pages()))
    assert blocks, "docs/benchmarks.md and its history publish no scale bench table"
    for block in blocks:
        result = json.loads((ROOT / block["file"]).read_text())
        assert block["table"] == "\n".join(result_lines(result)) + "\n", block["file"]


def test_every_link_into_the_history_names_one_of_its_sections():
    """The verdicts page (and any other page) links into the history by its sections' anchors, as GitHub makes them
    from the headings outside code blocks: a renamed or moved section breaks no link unnoticed."""
    text, fenced, anchors = DOCS[1].read_text(), False, set()
    for line in text.splitlines():
        fenced = fenced != line.lstrip().startswith("```")
        if not fenced and re.match(r"#{1,6} ", line):
            heading = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower())
            anchors.add(heading.replace(" ", "-"))
    linking = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    links = {link for page in linking for link in re.findall(r"benchmark-history\.md#([\w-]+)", page.read_text())}
    assert len(links) >= 20 and links <= anchors, sorted(links - anchors)
