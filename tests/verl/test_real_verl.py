"""verl for real: the tests in tests/verl/inside/ run with an installed verl, in its own environment.

verl 0.9.1 pins transformers below the version the project uses, so it cannot share `.venv`.
`tests/verl/setup_env.sh` builds its environment once, in a cache outside the clone (`make verl-env`, a
prerequisite of `make test`; CI reuses the cache). This test finds that environment with `setup_env.sh --check`
and runs the inside tests with its python, in one process: real `RLHFDataset`, `default_compute_score`, hydra
config, custom-reward loader, checkpoint hook, and verl 0.9's v1 trainer with its TransferQueue on a local Ray
(no model workers, no GPU). Without the environment the test is skipped and says why; it never passes without
verl. `VERL_SPEC`/`VERL_EXTRA` pick another verl (`make test-verl07`: verl 0.7.1 with numpy<2 and pyarrow<26).
"""

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
INSIDE = HERE / "inside"
LIMIT_S = 600  # the inside tests take one to two minutes on two cores; a hang must not stall CI


def verl_environment() -> Path:
    check = subprocess.run(["bash", str(HERE / "setup_env.sh"), "--check"], capture_output=True, text=True)
    if check.returncode != 0:
        why = " | ".join(check.stderr.strip().splitlines())
        pytest.skip(f"no verl environment, so real verl is not tested: {why}")
    return Path(check.stdout.strip())


def installed_layout(folder: Path) -> Path:
    """The package as a wheel lays it out, from links into the clone: gaincurate/ with kernels/ inside it as
    gaincurate/kernels (pyproject's package-dir), and its dist-info with the entry points. verl's environment does not
    install gaincurate (it is shared by every clone), so without this the clone's own layout would hide
    gaincurate.kernels, and the lab's registrations, from the code under test."""
    package = folder / "gaincurate"
    package.mkdir(parents=True)
    for entry in (ROOT / "gaincurate").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "kernels").symlink_to(ROOT / "kernels")
    # The installed metadata too: the lab's strategies reach the product through pyproject's entry points only.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = folder / f"gaincurate-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: gaincurate\nVersion: {project['version']}\n")
    groups = project["entry-points"].items()
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in entries.items())
            for group, entries in groups
        )
    )
    return folder


def test_real_verl_runs_the_documented_integration(tmp_path):
    venv = verl_environment()
    env = dict(
        os.environ,
        # tests/: the builders shared with the outer tests (verl_preprocessing, fake_scores, helpers' tokenizer).
        PYTHONPATH=os.pathsep.join([str(installed_layout(tmp_path / "site")), str(INSIDE), str(ROOT / "tests")]),
        PYTHONSAFEPATH="1",  # else `python -m` puts the clone (the working directory) before the layout above
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    command = [str(venv / "bin" / "python"), "-m", "pytest", str(INSIDE), "-q", "-p", "no:cacheprovider"]
    command += ["--confcutdir", str(INSIDE), "-rs", "--disable-warnings"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LIMIT_S)
    print(result.stdout[-6000:])  # the inside summary, shown with -rA or on failure
    assert result.returncode == 0, f"verl tests failed in {venv}:\n{result.stdout[-12000:]}\n{result.stderr[-3000:]}"
    assert " passed" in result.stdout.splitlines()[-1]
