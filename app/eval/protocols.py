"""Readers for evaluation protocol files: LFW pair lists and identification CSVs."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

IDENTIFY_ROLES = ("gallery", "gallery_distractor", "mated_probe", "nonmated_probe")


@dataclass(frozen=True)
class Pair:
    path_a: Path
    path_b: Path
    same: bool
    fold: int


@dataclass(frozen=True)
class PairList:
    pairs: list[Pair]
    folds: int  # 1 for a single list (View 1), 10 for View 2


def _lfw_path(root: Path, name: str, index: str) -> Path:
    return root / name / f"{name}_{int(index):04d}.jpg"


def read_lfw_pairs(root: Path, pairs_file: Path) -> PairList:
    """Read an LFW-format pair list.

    View 1 files start with ``N`` (N same-person lines, then N different-person
    lines); View 2 files start with ``folds<TAB>N`` and repeat that block once
    per fold. Same-person lines are ``name i j``, different-person lines
    ``name1 i name2 j``.
    """
    lines = [line.split() for line in pairs_file.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{pairs_file} is empty")
    header = [int(v) for v in lines[0]]
    folds, per_kind = (1, header[0]) if len(header) == 1 else (header[0], header[1])
    body = lines[1:]
    if len(body) != folds * 2 * per_kind:
        raise ValueError(f"{pairs_file}: expected {folds * 2 * per_kind} pair lines, found {len(body)}")
    pairs: list[Pair] = []
    for index, fields in enumerate(body):
        fold = index // (2 * per_kind)
        if len(fields) == 3:
            name, i, j = fields
            pairs.append(Pair(_lfw_path(root, name, i), _lfw_path(root, name, j), True, fold))
        elif len(fields) == 4:
            name_a, i, name_b, j = fields
            pairs.append(Pair(_lfw_path(root, name_a, i), _lfw_path(root, name_b, j), False, fold))
        else:
            raise ValueError(f"{pairs_file}: line {index + 2} has {len(fields)} fields")
    return PairList(pairs, folds)


@dataclass(frozen=True)
class IdentifyEntry:
    path: Path
    identity: str
    role: str


def read_identify_protocol(root: Path, protocol_file: Path) -> list[IdentifyEntry]:
    """Read a ``path,identity,role`` CSV; paths are relative to ``root``."""
    entries: list[IdentifyEntry] = []
    with protocol_file.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "identity", "role"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{protocol_file} lacks columns: {', '.join(sorted(missing))}")
        for row in reader:
            role = row["role"].strip()
            if role not in IDENTIFY_ROLES:
                raise ValueError(f"{protocol_file}: unknown role {role!r} (expected one of {IDENTIFY_ROLES})")
            entries.append(IdentifyEntry(root / row["path"].strip(), row["identity"].strip(), role))
    return entries
