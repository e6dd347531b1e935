"""ONNX Runtime sessions: CUDA when the installed runtime offers it, else CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from app.core.logging import log_event

logger = logging.getLogger(__name__)


def default_providers() -> list[str]:
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def create_session(
    model_path: Path, *, threads: int = 0, providers: list[str] | None = None
) -> ort.InferenceSession:
    """Open ``model_path``; ``threads`` > 0 caps ONNX Runtime's intra-op threads."""
    options = ort.SessionOptions()
    # Idle intra-op threads sleep instead of spinning: on a small, shared
    # machine spinning threads starve the other work (a measured 2-3x slowdown
    # under load), and the service already runs several sessions in parallel.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    chosen = providers or default_providers()
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=chosen)
    log_event(logger, "onnx_session_created", model=model_path.name, providers=session.get_providers())
    return session
