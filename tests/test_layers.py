"""The import contracts in pyproject.toml hold on this tree and refuse a wrong import.

``make test`` runs ``lint-imports`` on the tree itself; here each contract is
shown to fail on a copy of the tree with one deliberately wrong import added,
so a contract that could never break would be noticed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# (module added to the copy, its one line, the contract that must break)
WRONG_IMPORTS = [
    ("app/core/wrong.py", "from app.db import session\n", "app: each layer imports only the layers below it"),
    ("app/schemas/wrong.py", "from app.db.models import Face\n", "app: each layer imports only"),
    ("app/pipeline/wrong.py", "from app.db.session import begin_write\n", "app: each layer imports only"),
    ("app/db/wrong.py", "from app.services import subjects\n", "app: each layer imports only"),
    ("app/index/wrong.py", "import sqlalchemy\n", "hold no database session and speak no HTTP"),
    ("app/eval/wrong.py", "from fastapi import Request\n", "hold no database session and speak no HTTP"),
    ("app/services/wrong.py", "import torch\n", "the service never imports the training package or PyTorch"),
    ("app/pipeline/wrong.py", "from training.models import registry\n", "never imports the training package"),
    ("training/wrong.py", "from app.services import container\n", "training uses only the pipeline"),
]


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and the contracts, without caches, in a folder of their own."""
    root = tmp_path_factory.mktemp("layers")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("app", "training"):
        shutil.copytree(REPO_ROOT / package, root / package, ignore=ignore)
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_tree_keeps_every_contract(tree_copy: Path) -> None:
    contracts = (tree_copy / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {contracts} kept, 0 broken." in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), WRONG_IMPORTS, ids=[m for m, _, _ in WRONG_IMPORTS])
def test_a_wrong_import_breaks_its_contract(tree_copy: Path, module: str, line: str, contract: str) -> None:
    wrong = tree_copy / module
    wrong.write_text(line)
    try:
        result = lint_imports(tree_copy)
    finally:
        wrong.unlink()
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in " ".join(broken.split()), result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout
