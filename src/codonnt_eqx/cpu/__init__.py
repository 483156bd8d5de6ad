"""CPU matrix products beyond what XLA:CPU reaches: bfloat16 GEMMs on the bfloat16 units
(AMX, AVX512-BF16) of Intel CPUs through Intel MKL, as an XLA FFI custom call built on first
use (the `cpu-bf16` extra: MKL's wheels and the machine's C++ compiler). Elsewhere (AMD) XLA's
own bfloat16 dot is the faster one, and is used."""

from ._build import MklGemmUnavailable as MklGemmUnavailable
from ._build import mkl_gemm_library as mkl_gemm_library
from ._gemm import bf16_units as bf16_units
from ._gemm import cpu_vendor as cpu_vendor
from ._gemm import mkl_gemm as mkl_gemm
from ._gemm import mkl_gemm_available as mkl_gemm_available
from ._gemm import mkl_pays as mkl_pays
