"""One memory measurement, in a process of its own: what ``model_memory.py`` starts for each one.

Reads this process's resident set (``VmRSS``) and its peak so far
(``VmHWM``) from ``/proc/self/status`` at each checkpoint: before the
service's modules are imported, after, then after each named model is loaded
through ``Pipelines.runner`` and after its first ``analyze`` of the image
(which allocates ONNX Runtime's arenas). Models load in the order given, into
one ``Pipelines``, as a serving process loads a collection's model on first
use. Prints one JSON object on stdout: the checkpoints, and the ONNX
Runtime threads and inference slots the service's rules gave this machine.

Only the standard library is imported before the first checkpoint, so that
it is the interpreter alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

STATUS = Path("/proc/self/status")


def checkpoint(label: str, **fields: Any) -> dict[str, Any]:
    """This process's resident and peak resident memory now, in KiB as the kernel counts them."""
    values = {}
    for line in STATUS.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])  # "  123456 kB"
    return {"label": label, "rss_kib": values["VmRSS"], "peak_kib": values["VmHWM"], **fields}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True, help="a photo with a face")
    parser.add_argument("models", nargs="+", help="embedders to load, in this order")
    args = parser.parse_args(argv)
    image = args.image.read_bytes()
    readings = [checkpoint("python")]

    import app.main  # noqa: F401  everything a `facerec serve` worker imports before its lifespan
    from app.core.settings import Settings
    from app.pipeline.pipelines import Pipelines
    from app.pipeline.runner import inference_settings

    readings.append(checkpoint("imported"))
    settings, workers = inference_settings(Settings(models_dir=args.models_dir))
    pipelines = Pipelines(settings, workers)
    for name in args.models:
        runner = pipelines.runner(name)
        readings.append(checkpoint("loaded", model=name))
        faces = len(runner.analyze(image, max_faces=1).faces)
        readings.append(checkpoint("analyzed", model=name, faces=faces))
    json.dump({"threads": settings.inference_threads, "slots": workers, "checkpoints": readings}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
