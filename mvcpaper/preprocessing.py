"""Feature preprocessing shared by the methods, the pipeline and the users (a leaf module)."""
from __future__ import annotations

import numpy as np

__all__ = ["l2_normalize"]


def l2_normalize(X, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit Euclidean norm, as float32 (the paper's preprocessing before
    clustering; an all-zero row stays zero)."""
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), eps)
