"""faiss, loaded with the BLAS kernels this CPU can run.

The faiss-cpu wheels bundle an OpenBLAS (0.3.15 in faiss-cpu 1.15) that does not know
every recent x86 CPU: on a 2-core AVX-512 VM (Intel family 6, model 207) it reported "Core
not found" and fell back to its generic SSE3 kernels, and every faiss search, k-means step
and exact kNN graph ran 3-5x slower than numpy's matrix product (7200 x 7200 x 3840-d kNN:
5.7 s, 1.2 s with the SkylakeX kernels). Unless ``OPENBLAS_CORETYPE`` is set, the
kernels are picked here from the CPU's flags, for faiss's load only (the variable is
restored afterwards); a process that imported faiss before mvcpaper keeps the kernels it
loaded with.
"""
from __future__ import annotations

import os

from .._utils import cpu_flags

#: OpenBLAS core types by the instruction sets their kernels need, widest first
_CORETYPES = (("SkylakeX", {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
              ("Haswell", {"avx2", "fma"}))


def openblas_coretype(flags: set[str]) -> str | None:
    """The widest OpenBLAS core type whose kernels ``flags`` (a CPU's) can run, else None."""
    return next((name for name, needs in _CORETYPES if needs <= flags), None)


_coretype = None if "OPENBLAS_CORETYPE" in os.environ else openblas_coretype(cpu_flags())
if _coretype:
    os.environ["OPENBLAS_CORETYPE"] = _coretype
try:
    import faiss  # noqa: E402  (its OpenBLAS reads the variable when it loads)
finally:
    if _coretype:
        del os.environ["OPENBLAS_CORETYPE"]

__all__ = ["faiss", "openblas_coretype"]
