"""Embed every LFW image once with the configured pipeline and keep the vectors in one ``.npz``.

The open-set study (``tools/open_set_study.py``) and a model's open-set
calibration (``facerec models calibrate --open-set``) draw many protocols
from the same 13,233 images; embedding them once (about 7 minutes on two
cores for the default pack) keeps each protocol a matter of seconds.

    FACEREC_EMBEDDER=dlib-resnet-v1 .venv/bin/python tools/embed_lfw.py \
        --lfw ../shared/data/lfw/lfw-deepfunneled --out data/study/lfw-dlib-resnet-v1.npz

The file holds ``paths`` (``Name/Name_0001.jpg``), ``identities``,
``vectors`` (N, D) float32 and ``metric``; faceless images are left out
and counted in ``no_face``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from app.core.settings import get_settings
from app.eval.embedding import embed_files
from app.pipeline.face_pipeline import FacePipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, required=True, help="lfw-deepfunneled: one folder per person")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, help="per-image embedding cache (facerec eval --cache)")
    args = parser.parse_args()

    pipeline = FacePipeline.from_settings(get_settings())
    paths = sorted(args.lfw.glob("*/*.jpg"))
    embedded = embed_files(pipeline, paths, cache_dir=args.cache)
    kept = [path for path in paths if path in embedded.embeddings]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        paths=np.array([f"{path.parent.name}/{path.name}" for path in kept]),
        identities=np.array([path.parent.name for path in kept]),
        vectors=np.stack([embedded.embeddings[path] for path in kept]).astype(np.float32),
        metric=np.array(pipeline.metric),
        model=np.array(pipeline.model.name),
        no_face=np.array(len(embedded.no_face)),
    )
    print(
        f"{len(kept)} embedded, {len(embedded.no_face)} without a face, {len(embedded.unreadable)} unreadable"
    )


if __name__ == "__main__":
    main()
