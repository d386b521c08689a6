"""The kernel and determinism legs collect only the files that name their marker (tests/conftest.py), and a test
marked from anywhere else stops the full collection instead of silently leaving its leg; the narrowed CPU paths the
suite runs are paths torch can take."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from simd_paths import PATHS, problem_with


@pytest.fixture()
def conftest(request):
    [module] = [p for p in request.config.pluginmanager.get_plugins() if getattr(p, "LEGS", None)]
    return module


def run_with(markexpr: str):
    return SimpleNamespace(getoption=lambda name: markexpr if name == "markexpr" else None)


def test_a_leg_collects_only_test_files_that_name_its_marker(conftest, tmp_path):
    marked, unmarked = tmp_path / "test_marked.py", tmp_path / "test_unmarked.py"
    marked.write_text("import pytest\n\n@pytest.mark.determinism\ndef test_x():\n    pass\n")
    unmarked.write_text("def test_y():\n    pass\n")
    helper = tmp_path / "helpers.py"
    helper.write_text("")
    assert conftest.pytest_ignore_collect(unmarked, run_with("determinism")) is True
    assert conftest.pytest_ignore_collect(marked, run_with("determinism")) is None
    assert conftest.pytest_ignore_collect(marked, run_with("triton")) is True
    assert conftest.pytest_ignore_collect(helper, run_with("triton")) is None  # not a test file: left to pytest
    for other in ("", "not triton", "triton or determinism"):  # every other run collects everything
        assert conftest.pytest_ignore_collect(unmarked, run_with(other)) is None


def test_a_test_marked_from_outside_its_file_stops_the_full_collection(conftest, tmp_path):
    unmarked = tmp_path / "test_unmarked.py"
    unmarked.write_text("def test_y():\n    pass\n")
    item = SimpleNamespace(name="test_y", nodeid="test_unmarked.py::test_y", path=unmarked,
                           get_closest_marker=lambda name: name == "triton" or None)  # fmt: skip
    with pytest.raises(pytest.UsageError, match="test_unmarked.py::test_y is marked triton"):
        conftest.pytest_collection_modifyitems(run_with(""), [item])
    item.get_closest_marker = lambda name: None
    conftest.pytest_collection_modifyitems(run_with(""), [item])  # an unmarked test is fine anywhere


def test_every_file_of_the_real_legs_names_its_marker(conftest):
    tests = Path(__file__).parent
    for leg, files in {"triton": ["test_score_triton.py", "kernels/test_kernel_triton.py"],
                       "determinism": ["schedule/test_recorded_runs.py", "test_numerics.py",
                                       "benchmarks/test_published_results.py"]}.items():  # fmt: skip
        for name in files:
            assert conftest.pytest_ignore_collect(tests / name, run_with(leg)) is None, name


def test_every_narrowed_path_is_one_torch_takes_on_every_x86_cpu():
    """A path that lowers ATen's kernels below AVX-512 holds oneDNN below AMX (tests/simd_paths.py says why): checked
    on the table, so a machine without AMX catches a path only an AMX machine would crash on."""
    for name, path in PATHS.items():
        assert problem_with(path) is None, f"{name}: {problem_with(path)}"
    assert problem_with({"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"})  # the crash met on AMX
    assert problem_with({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"})
    assert problem_with({"ATEN_CPU_CAPABILITY": "avx512"}) is None and problem_with({}) is None
