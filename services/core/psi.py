"""Population Stability Index against frozen reference bins (pure, numpy only).

A :class:`BinSpec` is built once from reference data and frozen into the model manifest;
the monitor and the backtest count live values into the same bins and compare.

Bins, in this order::

    [missing, below_min, q_0, q_1, ..., q_m, above_max]

* ``missing``: NaN (and None) values.
* ``below_min`` / ``above_max``: finite values outside ``[min, max]`` of the reference;
  ``-inf``/``+inf`` land there too. Their expected share is 0 by construction, so a
  live value outside the reference range is visible as drift instead of hiding in an
  end bin.
* ``q_i``: the reference range cut at ``edges`` (interior cut points taken at the
  deciles of the reference, method ``inverted_cdf`` so a cut is always a value that
  occurs). Bins are right-closed: ``q_0 = [min, e_0]``, ``q_i = (e_{i-1}, e_i]``,
  ``q_m = (e_{m-1}, max]``. Duplicate cuts are merged and a cut equal to ``max`` is
  dropped, so a binary feature gets two bins, a count feature one bin per frequent
  value, and a constant feature a single bin.

PSI = sum over bins of ``(a - e) * ln(a / e)`` with ``a`` and ``e`` the actual and
expected shares. Empty bins would make it infinite, so both share vectors are smoothed
additively and renormalised: ``p' = (p + epsilon) / (1 + epsilon * n_bins)``, with
``DEFAULT_EPSILON = 1e-4`` (a bin with no mass then weighs like 1 row in 10 000).
``epsilon = 0`` gives the textbook formula (infinite if a share is 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_BINS = 10
DEFAULT_EPSILON = 1e-4
MISSING, BELOW_MIN = 0, 1
N_SPECIAL_BINS = 3  # missing, below_min, above_max


@dataclass(frozen=True)
class BinSpec:
    """Frozen reference bins of one variable; see the module doc for the bin layout."""

    edges: tuple[float, ...]
    minimum: float | None  # None when the reference had no finite value
    maximum: float | None
    expected: tuple[float, ...]  # shares of the reference per bin, summing to 1 (or all 0)
    n: int  # reference rows

    @property
    def n_bins(self) -> int:
        return len(self.edges) + 1 + N_SPECIAL_BINS

    def labels(self) -> list[str]:
        """Human names of the bins, for reports and metric labels."""
        if self.minimum is None or self.maximum is None:
            inner = ["[]"]
        else:
            cuts = [self.minimum, *self.edges, self.maximum]
            inner = [f"[{cuts[0]:g},{cuts[1]:g}]"]
            inner += [f"({lo:g},{hi:g}]" for lo, hi in zip(cuts[1:-1], cuts[2:], strict=True)]
        return ["missing", "below_min", *inner, "above_max"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "min": self.minimum,
            "max": self.maximum,
            "expected": list(self.expected),
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinSpec:
        edges = tuple(float(e) for e in data["edges"])
        expected = tuple(float(e) for e in data["expected"])
        spec = cls(
            edges=edges,
            minimum=None if data["min"] is None else float(data["min"]),
            maximum=None if data["max"] is None else float(data["max"]),
            expected=expected,
            n=int(data.get("n", 0)),
        )
        if len(expected) != spec.n_bins:
            raise ValueError(f"bin spec has {len(expected)} expected shares for {spec.n_bins} bins")
        if list(edges) != sorted(set(edges)):
            raise ValueError("bin edges must be strictly increasing")
        return spec


def _as_float_array(values: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)  # None becomes nan
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {arr.shape}")
    return arr


def quantile_edges(finite: np.ndarray, n_bins: int = DEFAULT_BINS) -> tuple[float, ...]:
    """Interior cut points at the quantiles of ``finite``, deduplicated, all below its max."""
    if finite.size == 0 or n_bins < 2:
        return ()
    probs = np.arange(1, n_bins) / n_bins
    cuts = np.unique(np.quantile(finite, probs, method="inverted_cdf"))
    top = float(finite.max())
    return tuple(float(c) for c in cuts if c < top)


def _bin_index(
    edges: tuple[float, ...], minimum: float | None, maximum: float | None, values: np.ndarray
) -> np.ndarray:
    n_inner = len(edges) + 1
    above_max = BELOW_MIN + n_inner + 1
    idx = np.full(values.shape, MISSING, dtype=np.int64)
    finite_or_inf = ~np.isnan(values)
    if minimum is None or maximum is None:
        # No finite reference value: every present value is out of range.
        idx[finite_or_inf] = above_max
        return idx
    below = finite_or_inf & (values < minimum)
    above = finite_or_inf & (values > maximum)
    inside = finite_or_inf & ~below & ~above
    idx[below] = BELOW_MIN
    idx[above] = above_max
    idx[inside] = (
        BELOW_MIN + 1 + np.searchsorted(np.asarray(edges, dtype=np.float64), values[inside], side="left")
    )
    return idx


def build_reference(values: npt.ArrayLike, n_bins: int = DEFAULT_BINS) -> BinSpec:
    """Freeze quantile bins and the expected shares of ``values`` (NaN = missing)."""
    arr = _as_float_array(values)
    finite = arr[np.isfinite(arr)]
    edges = quantile_edges(finite, n_bins)
    minimum = float(finite.min()) if finite.size else None
    maximum = float(finite.max()) if finite.size else None
    draft = BinSpec(edges=edges, minimum=minimum, maximum=maximum, expected=(), n=int(arr.size))
    counts = np.bincount(_bin_index(edges, minimum, maximum, arr), minlength=draft.n_bins)
    shares = counts / arr.size if arr.size else np.zeros(draft.n_bins)
    return BinSpec(
        edges=edges,
        minimum=minimum,
        maximum=maximum,
        expected=tuple(float(x) for x in shares),
        n=int(arr.size),
    )


def bin_counts(spec: BinSpec, values: npt.ArrayLike) -> np.ndarray:
    """How many of ``values`` fall in each of ``spec``'s bins (int64, length ``n_bins``)."""
    arr = _as_float_array(values)
    idx = _bin_index(spec.edges, spec.minimum, spec.maximum, arr)
    return np.bincount(idx, minlength=spec.n_bins).astype(np.int64)


def smooth(shares: np.ndarray, epsilon: float) -> np.ndarray:
    """Additive smoothing that keeps the shares summing to 1."""
    return (shares + epsilon) / (1.0 + epsilon * shares.size)


def psi(
    expected_props: npt.ArrayLike, actual_counts: npt.ArrayLike, epsilon: float = DEFAULT_EPSILON
) -> float:
    """PSI of ``actual_counts`` against ``expected_props``; ``nan`` when there are no counts."""
    expected = np.asarray(expected_props, dtype=np.float64)
    counts = np.asarray(actual_counts, dtype=np.float64)
    if expected.shape != counts.shape or expected.ndim != 1:
        raise ValueError(f"expected shares {expected.shape} and counts {counts.shape} differ in shape")
    if epsilon < 0 or (counts < 0).any() or (expected < 0).any():
        raise ValueError("epsilon, shares and counts must be non-negative")
    total = counts.sum()
    if total == 0:
        return math.nan
    e = smooth(expected, epsilon)
    a = smooth(counts / total, epsilon)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(a == e, 0.0, (a - e) * np.log(a / e))
    return float(terms.sum())


def psi_of(spec: BinSpec, values: npt.ArrayLike, epsilon: float = DEFAULT_EPSILON) -> float:
    """PSI of raw ``values`` against ``spec``."""
    return psi(spec.expected, bin_counts(spec, values), epsilon)


def build_references(
    matrix: np.ndarray,
    names: tuple[str, ...] | list[str],
    scores: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
    epsilon: float = DEFAULT_EPSILON,
    exempt: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """The manifest's ``psi_reference``: one BinSpec per feature column and one for the score.

    ``exempt`` names features whose PSI is reported but never counted as drift.
    """
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise ValueError(f"matrix of shape {matrix.shape} does not match {len(names)} feature names")
    return {
        "features": {name: build_reference(matrix[:, j], n_bins).to_dict() for j, name in enumerate(names)},
        "score": build_reference(scores, n_bins).to_dict(),
        "n": int(matrix.shape[0]),
        "bins": n_bins,
        "epsilon": epsilon,
        "exempt": [name for name in names if name in set(exempt)],
    }
