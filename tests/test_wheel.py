"""The wheel holds every module of the source tree and the bundled data, nothing more.

An editable install (and so every other test, and CI) imports straight from the source folders, so a sub-package
the build leaves out goes unnoticed until someone installs the wheel. This test builds the wheel offline, with this
venv's own setuptools (no build isolation, no index), and compares what it holds with the folders.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each source folder and where the wheel puts it (pyproject.toml's package-dir).
INSTALLED_AS = {"gaincurate": "gaincurate", "kernels": "gaincurate/kernels"}
ASSETS = ("gaincurate/assets/*.jsonl", "gaincurate/assets/*.json")  # pyproject.toml's package-data


def _source_copy(folder: Path) -> Path:
    """The files a build reads, copied: a build in the checkout would leave build/ behind, and a stale build/lib
    there can carry a module into the wheel that the configuration itself would leave out."""
    folder.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, folder / name)
    for source in INSTALLED_AS:
        shutil.copytree(ROOT / source, folder / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return folder


def _expected(source: Path) -> set[str]:
    modules = {
        f"{installed}/{path.relative_to(source / folder).as_posix()}"
        for folder, installed in INSTALLED_AS.items()
        for path in (source / folder).rglob("*.py")
    }
    return modules | {path.relative_to(source).as_posix() for pattern in ASSETS for path in source.glob(pattern)}


def test_the_wheel_holds_every_module_and_asset_of_the_source_tree(tmp_path):
    source = _source_copy(tmp_path / "source")
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir"]
    done = subprocess.run([*build, "--quiet", "--wheel-dir", str(dist), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dist.glob("gaincurate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = {name for name in archive.namelist() if ".dist-info/" not in name}
    expected = _expected(source)
    assert any(name.startswith("gaincurate/assets/") for name in expected)  # the data this test guards is there
    assert sorted(expected - packed) == []  # left out of the wheel
    assert sorted(packed - expected) == []  # packed but not a module of the tree (a top-level `kernels`, say)
