"""ONNX Runtime providers: what each session runs on is recorded, and CUDA never falls back silently.

Here the installed runtime is the CPU one, so the check passes on real
sessions; the GPU runtime's silent fallback is given as the facts ONNX
Runtime reports in that case (CUDA offered, the session on the CPU), and
``bench/gpu_check.sh`` checks the real thing on a GPU machine.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest

from app.cli import main as facerec
from app.core.settings import Settings
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.runtime import CPU, CUDA, CudaUnusable, check_providers, cuda_problem, providers_in_use


def test_every_session_is_recorded_with_the_provider_it_got(pipeline: FacePipeline) -> None:
    in_use = providers_in_use()
    assert f"{pipeline.model.name}/{pipeline.model.file}" in in_use, in_use
    assert CUDA not in ort.get_available_providers()  # the CPU runtime: nothing else to get
    assert set(in_use.values()) == {CPU}
    check_providers(allow_cpu_fallback=False)  # no CUDA offered: nothing fell back


def test_cuda_offered_but_not_used_is_named_model_by_model() -> None:
    offered = [CUDA, CPU]
    assert cuda_problem([CPU], {"det.onnx": CPU, "emb.onnx": CPU}) is None
    assert cuda_problem(offered, {"det.onnx": CUDA, "emb.onnx": CUDA}) is None
    problem = cuda_problem(offered, {"det.onnx": CUDA, "emb.onnx": CPU, "other.onnx": CPU})
    assert problem is not None and "emb.onnx, other.onnx opened on the CPU" in problem
    assert "det.onnx" not in problem


@pytest.mark.parametrize("allowed", [False, True])
def test_the_fallback_stops_the_start_unless_allowed(monkeypatch: pytest.MonkeyPatch, allowed: bool) -> None:
    """ONNX Runtime with CUDA built in but no usable GPU: it offers CUDA and opens sessions on the CPU."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    if allowed:
        check_providers(allow_cpu_fallback=True)  # logged, then the CPU serves
    else:
        with pytest.raises(CudaUnusable, match="FACEREC_CPU_FALLBACK=true"):
            check_providers(allow_cpu_fallback=False)


def test_facerec_check_names_the_provider_of_each_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert facerec(["check"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("ok: ") and "ONNX Runtime: " in said
    detector, embedder = Settings().detector, Settings().embedder
    assert f"{detector}/model.onnx on {CPU}" in said and f"{embedder}/model.onnx on {CPU}" in said, said
