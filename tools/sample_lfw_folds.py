"""Write a View-2-shaped LFW pair list: 10 folds of 300 same-person and 300 different-person pairs.

LFW's own View 2 list is kept out of this project's data for an independent
check, and View 1 DevTest's 1,000 pairs resolve accuracy only to about
+-0.006 (95%): one pair is 0.001. Lists drawn this way from all 13,233
images, 6,000 pairs each and several seeds, give a steadier estimate of
what View 2 would say and a fairer comparison of reading modes.

Drawn like View 2: the people are dealt into 10 folds, so no person appears
in two folds (the 10-fold protocol's thresholds never see a test person).
Within a fold, a same-person pair picks one of the fold's people with two or
more photos, then two of their photos; a different-person pair picks two of
the fold's people, then one photo of each. Pairs within a fold are distinct.
The seed makes a list reproducible.

Run, then evaluate the list like any LFW pair list:
    .venv/bin/python tools/sample_lfw_folds.py --names ../shared/data/lfw/lfw-names.txt \
        --seed 1 --out folds-1.txt
    .venv/bin/facerec eval pairs --root ../shared/data/lfw/lfw-deepfunneled --pairs folds-1.txt
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

FOLDS = 10
PAIRS_PER_KIND = 300

SamePair = tuple[str, int, int]
DifferentPair = tuple[str, int, str, int]


def read_name_counts(names_file: Path) -> dict[str, int]:
    """``lfw-names.txt`` (``name<TAB>image count`` per line) as a dict."""
    counts: dict[str, int] = {}
    for line in names_file.read_text().splitlines():
        if line.strip():
            name, count = line.split()
            counts[name] = int(count)
    return counts


def sample_folds(
    counts: dict[str, int], seed: int, *, folds: int = FOLDS, per_kind: int = PAIRS_PER_KIND
) -> list[tuple[list[SamePair], list[DifferentPair]]]:
    """Per fold, ``per_kind`` same-person and ``per_kind`` different-person pairs (1-based image numbers)."""
    rng = random.Random(seed)
    people = sorted(counts)
    rng.shuffle(people)
    drawn = []
    for fold_people in (people[f::folds] for f in range(folds)):
        several = [p for p in fold_people if counts[p] >= 2]
        if sum(counts[p] * (counts[p] - 1) // 2 for p in several) < per_kind:
            raise ValueError(f"a fold has too few people with several photos for {per_kind} same pairs")
        same: set[SamePair] = set()
        while len(same) < per_kind:
            person = rng.choice(several)
            first, second = sorted(rng.sample(range(1, counts[person] + 1), 2))
            same.add((person, first, second))
        different: set[DifferentPair] = set()
        while len(different) < per_kind:
            person_a, person_b = sorted(rng.sample(fold_people, 2))
            photo_a, photo_b = rng.randint(1, counts[person_a]), rng.randint(1, counts[person_b])
            different.add((person_a, photo_a, person_b, photo_b))
        drawn.append((sorted(same), sorted(different)))
    return drawn


def format_pair_list(drawn: list[tuple[list[SamePair], list[DifferentPair]]]) -> str:
    """LFW View 2's format: ``folds<TAB>per_kind``, then each fold's same and different lines."""
    lines = [f"{len(drawn)}\t{len(drawn[0][0])}"]
    for same, different in drawn:
        lines += ["\t".join(map(str, pair)) for pair in same]
        lines += ["\t".join(map(str, pair)) for pair in different]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=Path, required=True, help="lfw-names.txt")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.write_text(format_pair_list(sample_folds(read_name_counts(args.names), args.seed)))


if __name__ == "__main__":
    main()
