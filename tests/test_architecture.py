"""The architecture holds: the import-linter layer contracts pass (and do catch a violation), and the bentofiles
install exactly what the `serve` extra declares (pyproject is the one place for pins)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
BENTOFILES = ("bentofile.yaml", "bentofile.gpu.yaml")
# `service` holds the BentoML app alone; the stages are seqguard.service / .export / .infra.
PACKAGES = ("seqguard", "service", "bench", "tests")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The packages are found from `root` alone (not from the editable install), so a copy of the tree is judged
    # as it is.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT_IMPORTS, "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_layer_contracts_hold() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_tree(dst: Path) -> None:
    shutil.copy2(REPO / "pyproject.toml", dst / "pyproject.toml")
    for pkg in PACKAGES:
        for src in (REPO / pkg).rglob("*.py"):
            target = dst / src.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        # The core reaching up into a stage, and the stages' process launcher.
        ("seqguard/features.py", "import seqguard.service.engine",
         "seqguard.features is not allowed to import seqguard.service"),
        ("seqguard/sequences.py", "import seqguard.processes.supervisor",
         "is not allowed to import seqguard.processes"),
        # A stage reaching into another stage, and into the CLI.
        ("seqguard/export/checkpoint.py", "import seqguard.infra.deploy.config",
         "seqguard.export is not allowed to import seqguard.infra"),
        ("seqguard/service/settings.py", "import seqguard.cli",
         "seqguard.service is not allowed to import seqguard.cli"),
        # The installed package reaching for the BentoML app, which is not installed (service/service.py).
        ("seqguard/commands/score.py", "import service.service", "seqguard.commands is not allowed to import service"),
        ("seqguard/events.py", "import service.service", "seqguard.events is not allowed to import service"),
        # bench on tests, and a file cycle.
        ("bench/common.py", "import tests.support", "bench is not allowed to import tests"),
        ("seqguard/train/components.py", "import seqguard.train.pipeline", "No cycles are allowed in seqguard.train"),
    ],
)
def test_contracts_catch_a_violation(tmp_path: Path, module: str, line: str, expected: str) -> None:
    _copy_tree(tmp_path)
    with open(tmp_path / module, "a") as f:
        f.write(f"\n{line}  # the violation under test\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert expected in " ".join(result.stdout.split()), result.stdout


def _requirement_name(req: str) -> str:
    return re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower()


def _extra(name: str) -> list[str]:
    """An extra's requirements, with the extras it names (`seqguard[aws]`) expanded in place."""
    out = []
    for req in _pyproject()["project"]["optional-dependencies"][name]:
        if _requirement_name(req) == "seqguard":
            for inner in req[req.index("[") + 1: req.index("]")].split(","):
                out += _extra(inner.strip())
        else:
            out.append(req)
    return out


def test_bentofiles_install_exactly_base_plus_serve_extra() -> None:
    project = _pyproject()["project"]
    expected = sorted([*project["dependencies"], *_extra("serve")], key=_requirement_name)
    for name in BENTOFILES:
        packages = yaml.safe_load((REPO / name).read_text())["python"]["packages"]
        assert packages == expected, (
            f"{name}: python.packages must be pyproject's dependencies + the `serve` extra, in this order:\n"
            + "\n".join(f'    - "{p}"' for p in expected)
        )


def test_serve_extra_holds_no_training_load_testing_or_aws_packages() -> None:
    project = _pyproject()["project"]
    serve = {_requirement_name(r) for r in [*project["dependencies"], *_extra("serve")]}
    assert not serve & {"torch", "transformers", "optimum", "locust", "moto", "nvidia-pytriton", "scikit-learn"}, serve


def test_makefile_installs_the_train_extras_torch_first() -> None:
    train = _pyproject()["project"]["optional-dependencies"]["train"]
    torch_pin = next(r for r in train if _requirement_name(r) == "torch")
    makefile = (REPO / "Makefile").read_text()
    assert f"--disable-pip-version-check {torch_pin} " in makefile
    assert '-e ".[all]"' in makefile


_WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if the extra that brings it were not installed
from seqguard.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _cli_without(packages: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _WITHOUT, packages, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_partial_install_says_which_extra_a_command_needs() -> None:
    """An install without boto3 (`pip install seqguard[train]`): `seqguard deploy` names the extra, exit code 2, no
    traceback, and the commands that can run still do."""
    result = _cli_without("boto3", "deploy", "plan", "deploy.yaml")
    assert result.returncode == 2, result.stderr
    assert "seqguard deploy: error: needs boto3" in result.stderr and "pip install 'seqguard[deploy]'" in result.stderr
    assert "Traceback" not in result.stderr
    helped = _cli_without("boto3", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "unavailable: needs boto3" in " ".join(helped.stdout.split())
    assert _cli_without("boto3", "generate", "--help").returncode == 0


def test_a_command_that_imports_its_stage_when_it_runs_names_the_extra(tmp_path: Path) -> None:
    data = tmp_path / "events.csv"
    data.write_text("user_id,ts,event_type\nu1,2026-11-30T10:00:00Z,view\n")
    result = _cli_without("tqdm,torch", "train", "--data", str(data), "--out", str(tmp_path / "m"))
    assert result.returncode == 2, result.stderr
    assert "pip install 'seqguard[train]'" in result.stderr and "Traceback" not in result.stderr
