"""tools/sample_lfw_folds.py: View-2-shaped pair lists that the eval CLI reads as 10 folds."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from app.eval.protocols import read_lfw_pairs
from tests.conftest import LFW_ROOT, REPO_ROOT, SHARED_DATA, require_data

TOOL = REPO_ROOT / "tools" / "sample_lfw_folds.py"


def sample(seed: int, out: Path) -> Path:
    names = require_data(SHARED_DATA / "lfw" / "lfw-names.txt")
    command = [sys.executable, str(TOOL), "--names", str(names), "--seed", str(seed), "--out", str(out)]
    subprocess.run(command, check=True, cwd=REPO_ROOT, timeout=120)
    return out


def test_list_has_view2_shape_with_people_disjoint_across_folds(tmp_path: Path) -> None:
    pair_list = read_lfw_pairs(require_data(LFW_ROOT), sample(1, tmp_path / "folds.txt"))

    assert pair_list.folds == 10
    assert len(pair_list.pairs) == 6000
    per_fold = Counter((pair.fold, pair.same) for pair in pair_list.pairs)
    assert set(per_fold.values()) == {300}
    people_folds: dict[str, set[int]] = {}
    for pair in pair_list.pairs:
        assert pair.path_a.is_file() and pair.path_b.is_file()
        assert pair.path_a != pair.path_b
        assert (pair.path_a.parent == pair.path_b.parent) == pair.same
        for path in (pair.path_a, pair.path_b):
            people_folds.setdefault(path.parent.name, set()).add(pair.fold)
    assert all(len(folds) == 1 for folds in people_folds.values())
    keys = [(pair.fold, pair.path_a, pair.path_b) for pair in pair_list.pairs]
    assert len(set(keys)) == len(keys)


def test_seed_makes_the_list_reproducible(tmp_path: Path) -> None:
    first = sample(2, tmp_path / "a.txt").read_text()
    again = sample(2, tmp_path / "b.txt").read_text()
    other = sample(3, tmp_path / "c.txt").read_text()

    assert first == again
    assert first != other
