"""What a serving worker imports: the app, and none of the heavy libraries only other commands need."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

# Each is tens of MiB a worker would hold for nothing: insightface (with onnx, scipy and
# scikit-image) serves only InsightFace packs, Alembic only migrations, which `facerec serve`
# applies before its workers start.
NOT_FOR_SERVING = ("insightface", "onnx", "scipy", "skimage", "alembic")


def test_a_worker_imports_none_of_the_libraries_it_does_not_serve_with() -> None:
    script = (
        "import json, sys; import app.main; "
        f"print(json.dumps([m for m in {NOT_FOR_SERVING!r} if m in sys.modules]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(completed.stdout) == []
