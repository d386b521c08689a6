"""Every module path and import the docs name works, and every old path (before issue 42) still loads its module.

Users copy these into scripts and launch lines (`pkg://gaincurate.integrations.verl.one_launch`,
`from gaincurate.integrations.trl import GainCurriculum`); a move that the docs did not follow fails here.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A dotted name that starts a path (not `.gaincurate.lock`, `+data.gaincurate.run_dir` or `gaincurate-score`).
DOTTED = re.compile(r"(?<![\w.+/-])(?:pkg://)?(gaincurate(?:\.\w+)+)")
FROM_IMPORT = re.compile(r"^\s*from (gaincurate(?:\.\w+)*) import ([\w, ]+)$", re.M)


def documented() -> set[str]:
    names: set[str] = set()
    for page in PAGES:
        text = page.read_text()
        names.update(match.group(1) for match in DOTTED.finditer(text))
        for module, imported in FROM_IMPORT.findall(text):
            names.update(f"{module}.{name.strip()}" for name in imported.split(","))
    return names


def resolve(path: str) -> object:
    """The module or attribute `path` names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as error:
            if error.name is None or not ".".join(parts[:cut]).startswith(error.name):
                raise  # a module that exists but imports something missing is a real failure
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(path)


# Names in the docs that are not Python paths: the scores format's keys and the run directory's files.
NOT_PATHS = {"gaincurate.KEY"}


def test_the_docs_name_paths_at_all():
    assert {"gaincurate.integrations.verl.one_launch", "gaincurate.integrations.trl.GainCurriculum"} <= documented()


@pytest.mark.parametrize("path", sorted(documented() - NOT_PATHS))
def test_every_documented_path_resolves(path):
    resolve(path)


def old_paths() -> dict[str, str]:
    """The shims: old module path -> the module it now is (gaincurate.moved.alias)."""
    shims = {}
    for path in (ROOT / "gaincurate").rglob("*.py"):
        match = re.search(r'^alias(?:_package)?\(__name__, "([\w.]+)"\)$', path.read_text(), re.M)
        if match:
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            shims[module] = match.group(1)
    return shims


def test_the_old_paths_the_docs_named_before_the_move_are_kept():
    assert {
        "gaincurate.integrations.verl_v1",
        "gaincurate.integrations.verl_checkpoint",
        "gaincurate.integrations.verl_reward",
        "gaincurate.schedule.driver",
        "gaincurate.schedule.curriculum",
        "gaincurate.schedule.inputs",
        "gaincurate.schedule.dots",
        "gaincurate.benchmarks",
        "gaincurate.difficulty.jobs",
        "gaincurate.difficulty.evaluate",
        "gaincurate.difficulty.online",
    } <= set(old_paths())


def test_the_calibrator_fitting_that_moved_to_the_lab_still_loads_from_its_old_module_with_a_warning():
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from gaincurate.difficulty.calibrate import FitConfig, fit_calibrator\n"
        "from gaincurate.lab.difficulty.fit import FitConfig as new, fit_calibrator as fit\n"
        "assert FitConfig is new and fit_calibrator is fit\n"
        "assert any(issubclass(w.category, DeprecationWarning) and 'lab.difficulty.fit' in str(w.message)\n"
        "           for w in caught)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_module_of_a_package_that_moved_is_the_new_module_and_runs_with_python_m():
    """`gaincurate.benchmarks` moved to the lab with every module below it (issue 50)."""
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from gaincurate.benchmarks.scale import ScaleBench\n"
        "    import gaincurate.benchmarks.curriculum.configs as configs\n"
        "from gaincurate.lab.benchmarks.scale import ScaleBench as new\n"
        "assert ScaleBench is new\n"
        "assert configs is importlib.import_module('gaincurate.lab.benchmarks.curriculum.configs')\n"
        "assert any(issubclass(w.category, DeprecationWarning) and 'gaincurate.lab' in str(w.message)\n"
        "           for w in caught)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    shown = subprocess.run([sys.executable, "-m", "gaincurate.benchmarks.probe_fit", "--help"], cwd=ROOT,
                           capture_output=True, text=True)  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-400:]


@pytest.mark.parametrize("old", sorted(old_paths()))
def test_an_old_path_is_the_new_module_and_says_it_moved(old):
    """In a fresh interpreter, so the warning is not swallowed by an import an earlier test made."""
    new = old_paths()[old]
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"assert old is importlib.import_module({new!r}), old\n"
        f"assert any(issubclass(w.category, DeprecationWarning) and {new!r} in str(w.message) for w in caught)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_verl_sampler_still_loads_from_the_package_path_verl_launch_lines_named():
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from gaincurate.integrations.verl import GainCurriculumSampler\n"
        "from gaincurate.integrations.verl.sampler import GainCurriculumSampler as new\n"
        "assert GainCurriculumSampler is new\n"
        "assert any(issubclass(w.category, DeprecationWarning) for w in caught)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
