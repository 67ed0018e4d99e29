"""Distances between sets of features: Fréchet distance, KID, and diversity.

Features are (N, D) arrays, e.g. from the feature network (``features.py``), one row per sample.

Fréchet distance (FID-style), between Gaussians fitted to the two sets:
    d² = |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)
The usual code (pytorch-fid, MDM, InterHandGen) takes ``scipy.linalg.sqrtm`` of the
non-symmetric product Σ₁Σ₂, which can come back complex or NaN when a covariance is singular
(fewer samples than dimensions, constant features) and is then patched with an ε·I offset. We use
the identity tr (Σ₁Σ₂)^½ = tr (Σ₁^½ Σ₂ Σ₁^½)^½: both square roots are of symmetric PSD matrices, taken
by ``scipy.linalg.eigh`` with negative round-off eigenvalues clipped to 0. The value is the same
where sqrtm works, and finite and ≥ 0 everywhere.

KID (Bińkowski et al. 2018): the unbiased MMD² between the sets under the polynomial kernel
k(x, y) = (γ x·y + c₀)^degree, averaged over random subsets. Standard KID uses degree 3, γ = 1/D,
c₀ = 1 (the default here). InterHandGen's evaluation calls the same routine with **degree 1** (a
linear kernel: then MMD² = γ|μ₁ − μ₂|², i.e. it only compares means); ``kid(..., degree=1)``
reproduces that when numbers must be compared with its paper.

Diversity (MDM, InterHandGen): the mean Euclidean distance between random pairs of features of
one set (they use 200 or 300 pairs). Their pairs may pick the same sample twice (distance 0); we
draw pairs of two different samples, or average over all pairs with ``num_pairs=None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import eigh
from scipy.spatial.distance import pdist

from handforge.evaluation.common import as_numpy


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) features (float64; N ≥ 2)."""
    f = _features(features, minimum=2)
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: Any, cov1: Any, mu2: Any, cov2: Any) -> float:
    """Fréchet distance (squared, as FID) between N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(f"need means (D,) and covariances (D, D) of one D, got {mu1.shape}, {cov1.shape}, "
                         f"{mu2.shape}, {cov2.shape}")
    if not all(np.isfinite(x).all() for x in (mu1, cov1, mu2, cov2)):
        raise ValueError("means and covariances must be finite (NaN or inf in the statistics)")
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    trace_root = np.sqrt(np.clip(eigh((middle + middle.T) / 2, eigvals_only=True), 0, None)).sum()
    value = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * trace_root
    return float(max(value, 0.0))


def frechet_feature_distance(features1: Any, features2: Any) -> float:
    """Fréchet distance between two (N, D) feature sets (the FID of those features)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def paired_frechet_difference(features1: Any, features2: Any, reference: Any, draws: int = 200, seed: int = 0,
                              level: float = 0.95, groups: Any = None) -> dict[str, float]:
    """FD(features1, reference) − FD(features2, reference) with a paired bootstrap interval: row i of the three
    (N, D) sets belong together (two engines' in-betweens of one window's keys and the window itself), so the rows
    are resampled together, with replacement, ``draws`` times (the percentile interval at ``level``: Efron &
    Tibshirani, An Introduction to the Bootstrap, 1993). ``groups`` (N,): rows that are not independent (windows
    cut from one clip) share a label and are drawn as a whole (a cluster bootstrap: resampling such rows one by one
    narrows the interval). FD from a few hundred samples in D = 128 moves with the windows drawn far more than
    between two engines in-betweening the same keys; the pairing keeps that shared part out of the difference.
    {"difference", "low", "high", "below_zero": the share of draws below 0 (not a p-value), "draws", "samples",
    "groups"}."""
    a, b, r = (_features(f, minimum=2) for f in (features1, features2, reference))
    if not a.shape == b.shape == r.shape:
        raise ValueError(f"paired feature sets need one shape, got {a.shape}, {b.shape}, {r.shape}")
    if draws < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need draws ≥ 1 and a level in (0, 1), got {draws} and {level}")
    labels = np.arange(len(a)) if groups is None else np.asarray(groups)
    if labels.shape != (len(a),):
        raise ValueError(f"groups needs one label per row ({len(a)}), got shape {labels.shape}")
    members = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(draws):
        rows = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        if len(rows) < 2:  # (one drawn group of one row: no covariance)
            rows = np.concatenate([rows, rows])
        found.append(frechet_feature_distance(a[rows], r[rows]) - frechet_feature_distance(b[rows], r[rows]))
    found = np.asarray(found)
    tail = 100 * (1 - level) / 2
    return {"difference": frechet_feature_distance(a, r) - frechet_feature_distance(b, r),
            "low": float(np.percentile(found, tail)), "high": float(np.percentile(found, 100 - tail)),
            "below_zero": float((found < 0).mean()), "draws": draws, "samples": len(a), "groups": len(members)}


def kid(features1: Any, features2: Any, degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
        num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) over subsets of the unbiased MMD² estimate.

    Defaults are standard KID (cubic kernel); ``degree=1`` is InterHandGen's variant. Subsets of
    ``min(subset_size, N1, N2)`` samples are drawn without replacement within a subset.
    """
    x, y = _features(features1, minimum=2), _features(features2, minimum=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sets differ in dimension: {x.shape[1]} and {y.shape[1]}")
    if degree < 1 or num_subsets < 1:
        raise ValueError("degree and num_subsets must be at least 1")
    if subset_size < 2:  # the unbiased estimate divides by m (m - 1)
        raise ValueError(f"subset_size must be at least 2, got {subset_size}")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    m = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for s in range(num_subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        values[s] = _mmd2_unbiased((gamma * a @ a.T + coef0) ** degree, (gamma * b @ b.T + coef0) ** degree,
                                   (gamma * a @ b.T + coef0) ** degree)
    return float(values.mean()), float(values.std())


def diversity(features: Any, num_pairs: int | None = 200, seed: int = 0) -> float:
    """Mean distance between ``num_pairs`` random pairs of distinct samples (all pairs if None)."""
    f = _features(features, minimum=2)
    if num_pairs is None:
        return float(pdist(f).mean())
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be at least 1 (or None for all pairs), got {num_pairs}")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(f), num_pairs)
    second = (first + rng.integers(1, len(f), num_pairs)) % len(f)  # uniform over the others
    return float(np.linalg.norm(f[first] - f[second], axis=1).mean())


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m = len(kxx)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _features(features: Any, minimum: int) -> np.ndarray:
    f = as_numpy(features).astype(np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be an (N, D) array, got shape {f.shape}")
    if len(f) < minimum:
        raise ValueError(f"need at least {minimum} feature vectors, got {len(f)}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or inf")
    return f
