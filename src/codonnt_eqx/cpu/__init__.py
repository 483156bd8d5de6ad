"""CPU matrix products beyond what XLA:CPU reaches: bfloat16 GEMMs on the bfloat16 units
(AMX, AVX512-BF16) of Intel CPUs through Intel MKL, as an XLA FFI custom call built on first
use (the `cpu-bf16` extra: MKL's wheels and the machine's C++ compiler). Elsewhere (AMD) XLA's
own bfloat16 dot is the faster one, and is used. Self-attention forward and backward through
MKL's GEMMs, float32 or bfloat16 (`mkl_attention`), faster than XLA's on Intel. And the
environment that gives XLA:CPU's buffers huge pages (`hugepage_environment`), with which the
command line restarts itself.
"""

from ._attention import mkl_attention as mkl_attention
from ._attention import mkl_attention_available as mkl_attention_available
from ._attention import mkl_attention_pays as mkl_attention_pays
from ._build import MklGemmUnavailable as MklGemmUnavailable
from ._build import mkl_gemm_library as mkl_gemm_library
from ._gemm import bf16_units as bf16_units
from ._gemm import cpu_vendor as cpu_vendor
from ._gemm import mkl_gemm as mkl_gemm
from ._gemm import mkl_gemm_available as mkl_gemm_available
from ._gemm import mkl_pays as mkl_pays
from ._hugepages import glibc_version as glibc_version
from ._hugepages import hugepage_environment as hugepage_environment
from ._hugepages import hugepages_pay as hugepages_pay
from ._hugepages import restart_with_hugepages as restart_with_hugepages
from ._hugepages import transparent_hugepages as transparent_hugepages
