"""How many bits an int8 model's weights may use on this CPU, and the check when one is loaded.

Without VNNI, x86 int8 kernels sum pairs of uint8 x int8 products in int16
(``app.core.cpu``): 8-bit weights can saturate there, 7-bit ones never do,
so a 7-bit model computes right on any CPU. Measured on the default
embedder: on an AMD EPYC with AVX2 only, 8-bit weights fell to cosine 0.943
with fp32; on one with AVX-512 VNNI they held fp32's FRR at FAR 1e-4 within
0.41 points where 7-bit ones lost 1.13 (README, Precision).
"""

from __future__ import annotations

from typing import Final

from app.core import cpu
from app.core.errors import ModelPackError
from app.pipeline.manifest import ModelManifest

PORTABLE_BITS: Final = 7
FULL_BITS: Final = 8


def weight_bits_for_this_cpu() -> int:
    """The most weight bits an int8 model built here may use."""
    return FULL_BITS if cpu.has_vnni() else PORTABLE_BITS


def check_int8_weights(manifest: ModelManifest) -> None:
    """Refuse an int8 model whose weights this CPU's kernels would saturate.

    A models folder built on a VNNI machine and moved (or baked into an
    image) to one without: its 8-bit embedder would run, but wrongly.
    """
    if manifest.quantization is None or manifest.quantization.weight_bits <= weight_bits_for_this_cpu():
        return
    raise ModelPackError(
        f"model {manifest.name} was built with {manifest.quantization.weight_bits}-bit weights for a CPU "
        "with VNNI, and this CPU's int8 kernels would saturate them; run `facerec models build` "
        "on this machine (or build with --portable-int8)",
        {"model": manifest.name, "weight_bits": manifest.quantization.weight_bits},
    )
