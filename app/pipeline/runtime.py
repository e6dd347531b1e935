"""ONNX Runtime sessions: CUDA when the installed runtime offers it, else CPU.

A runtime built with CUDA (the ``gpu`` extra: onnxruntime-gpu) offers the
CUDA provider whether or not it can load it: without a usable driver, CUDA
libraries or device, ONNX Runtime opens the session on the CPU with only a
warning. Every session's providers are recorded here, and
``check_providers`` turns that silent fallback into an error unless the
caller allows it; ``/ready`` and ``facerec check`` name what is in use.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import onnxruntime as ort

from app.core.logging import log_event
from app.core.memory import release_freed_memory

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_shared_arena_lock = threading.Lock()
_shared_arena_registered = False
_providers_lock = threading.Lock()
_providers_in_use: dict[str, str] = {}  # "model folder/file" → the provider its session runs on


class CudaUnusable(RuntimeError):
    """The installed ONNX Runtime offers CUDA, but a model's session could not use it."""


def default_providers() -> list[str]:
    if CUDA in ort.get_available_providers():
        return [CUDA, CPU]
    return [CPU]


def providers_in_use() -> dict[str, str]:
    """ "Model folder/file" → the provider its session in this process runs on (the first it got)."""
    with _providers_lock:
        return dict(_providers_in_use)


def cuda_problem(offered: list[str], in_use: dict[str, str]) -> str | None:
    """Why the sessions do not run on the CUDA the runtime offers; None when they do or none is offered."""
    if CUDA not in offered:
        return None
    on_cpu = sorted(model for model, provider in in_use.items() if provider != CUDA)
    if not on_cpu:
        return None
    return (
        f"the installed ONNX Runtime offers CUDA but {', '.join(on_cpu)} opened on the CPU: "
        "no usable GPU, driver or CUDA/cuDNN libraries (see ONNX Runtime's warning above)"
    )


def check_providers(*, allow_cpu_fallback: bool) -> None:
    """Raise ``CudaUnusable`` when CUDA is offered but a session runs without it, unless allowed."""
    problem = cuda_problem(ort.get_available_providers(), providers_in_use())
    if problem is None:
        return
    if not allow_cpu_fallback:
        raise CudaUnusable(f"{problem}; set FACEREC_CPU_FALLBACK=true to run on the CPU anyway")
    log_event(logger, "onnx_cpu_fallback", logging.WARNING, reason=problem)


def use_shared_cpu_arena(options: ort.SessionOptions) -> None:
    """Make the session allocate its CPU tensors from one arena shared by every session of the process.

    Each session otherwise grows an arena of its own to its largest run and
    keeps it; the detector and the embedder run one after the other, so one
    arena sized for the larger of the two serves both. Measured on 2 cores
    with the default models: ~20 MiB less per process after 8 clients, no
    change in the pipeline's time.
    """
    global _shared_arena_registered
    with _shared_arena_lock:
        if not _shared_arena_registered:
            arena = ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR
            cpu = ort.OrtMemoryInfo("Cpu", arena, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, -1, -1, -1))  # ONNX Runtime's defaults
            _shared_arena_registered = True
    options.add_session_config_entry("session.use_env_allocators", "1")


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
    # No memory pattern: it plans one block per input shape, and both models see
    # many shapes (each photo's working size, each batch size); without it a worker
    # held ~8 MiB less after 8 clients, and the pipeline was no slower.
    options.enable_mem_pattern = False
    use_shared_cpu_arena(options)
    chosen = providers or default_providers()
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=chosen)
    # Parsing the model and optimising its graph freed most of what they allocated
    # (the dlib model: 68 MiB allocated, 24 MiB kept); malloc would keep it all.
    release_freed_memory()
    in_use = session.get_providers()
    with _providers_lock:
        _providers_in_use[f"{model_path.parent.name}/{model_path.name}"] = in_use[0]
    log_event(logger, "onnx_session_created", model=model_path.name, providers=in_use)
    return session
