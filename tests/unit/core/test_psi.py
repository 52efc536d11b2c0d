from __future__ import annotations

import json
import math

import numpy as np
import pytest

from services.core import psi


def test_psi_hand_computed_without_smoothing() -> None:
    # (0.3-0.5)ln(0.3/0.5) + (0.7-0.5)ln(0.7/0.5)
    expected = 0.2 * math.log(5 / 3) + 0.2 * math.log(7 / 5)
    assert psi.psi([0.5, 0.5], [30, 70], epsilon=0.0) == pytest.approx(expected, rel=1e-12)


def test_psi_hand_computed_with_smoothing_of_an_empty_bin() -> None:
    # eps 0.01, 3 bins: shares become (p + 0.01) / 1.03.
    # e = (.51, .51, .01)/1.03, a = (.51, .26, .26)/1.03 ->
    # (-.25/1.03) ln(26/51) + (.25/1.03) ln(26) = (.25/1.03) ln(51)
    value = psi.psi([0.5, 0.5, 0.0], [2, 1, 1], epsilon=0.01)
    assert value == pytest.approx(0.25 / 1.03 * math.log(51), rel=1e-12)
    assert math.isinf(psi.psi([0.5, 0.5, 0.0], [2, 1, 1], epsilon=0.0))


def test_identical_distribution_gives_zero() -> None:
    values = np.random.default_rng(1).normal(size=5000)
    spec = psi.build_reference(values)
    assert psi.psi_of(spec, values) == 0.0
    assert psi.psi(spec.expected, np.round(np.array(spec.expected) * 1000)) == pytest.approx(0.0, abs=1e-9)


def test_psi_grows_with_a_shift() -> None:
    rng = np.random.default_rng(2)
    spec = psi.build_reference(rng.normal(size=20_000))
    small = psi.psi_of(spec, rng.normal(0.1, 1.0, size=20_000))
    large = psi.psi_of(spec, rng.normal(1.0, 1.0, size=20_000))
    assert 0 < small < 0.05 < 0.25 < large


def test_no_counts_gives_nan() -> None:
    assert math.isnan(psi.psi([0.5, 0.5], [0, 0]))


def test_decile_bins_of_a_continuous_feature() -> None:
    spec = psi.build_reference(np.arange(1, 101, dtype=float))
    assert spec.edges == (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
    assert (spec.minimum, spec.maximum) == (1.0, 100.0)
    assert spec.n_bins == 13
    assert spec.expected == (0.0, 0.0) + (0.1,) * 10 + (0.0,)
    assert spec.labels()[:3] == ["missing", "below_min", "[1,10]"]
    assert spec.labels()[-2:] == ["(90,100]", "above_max"]


def test_binary_feature_gets_two_bins() -> None:
    values = np.array([0.0] * 70 + [1.0] * 30)
    spec = psi.build_reference(values)
    assert spec.edges == (0.0,)
    assert spec.expected == (0.0, 0.0, 0.7, 0.3, 0.0)
    rare = psi.build_reference(np.array([0.0] * 97 + [1.0] * 3))
    assert rare.edges == (0.0,)  # every decile is 0, still two bins
    assert rare.expected[2:4] == (0.97, 0.03)


def test_constant_feature_gets_one_bin() -> None:
    spec = psi.build_reference(np.full(50, 3.0))
    assert spec.edges == ()
    assert spec.expected == (0.0, 0.0, 1.0, 0.0)
    assert list(psi.bin_counts(spec, [3.0, 2.0, 4.0, float("nan")])) == [1, 1, 1, 1]


def test_nan_goes_to_missing_and_outliers_to_out_of_range_bins() -> None:
    spec = psi.build_reference(np.array([1.0, 2.0, 3.0, 4.0, float("nan")]))
    assert spec.expected[0] == pytest.approx(0.2)  # missing share from the reference
    values = np.array([float("nan"), None, 0.5, -math.inf, 9.0, math.inf, 1.0, 4.0], dtype=object)
    counts = psi.bin_counts(spec, values)
    assert counts[0] == 2  # nan and None
    assert counts[1] == 2  # below min
    assert counts[-1] == 2  # above max
    assert counts[2:-1].sum() == 2  # the in-range values


def test_values_on_an_edge_go_to_the_lower_bin() -> None:
    spec = psi.build_reference(np.arange(1, 101, dtype=float))
    counts = psi.bin_counts(spec, [10.0, 10.5, 1.0, 100.0])
    assert counts[2] == 2  # [1, 10] holds 1 and 10
    assert counts[3] == 1  # (10, 20] holds 10.5
    assert counts[11] == 1  # (90, 100] holds 100


def test_all_missing_reference() -> None:
    spec = psi.build_reference(np.array([float("nan")] * 4))
    assert spec.minimum is None and spec.edges == ()
    assert spec.expected == (1.0, 0.0, 0.0, 0.0)
    assert list(psi.bin_counts(spec, [float("nan"), 1.0])) == [1, 0, 0, 1]


def test_spec_round_trips_through_json() -> None:
    spec = psi.build_reference(np.random.default_rng(3).exponential(size=1000))
    again = psi.BinSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_bad_spec_is_refused() -> None:
    data = psi.build_reference(np.arange(10.0)).to_dict()
    data["expected"] = data["expected"][:-1]
    with pytest.raises(ValueError):
        psi.BinSpec.from_dict(data)


def test_build_references_covers_every_feature_and_the_score() -> None:
    matrix = np.column_stack([np.arange(100.0), np.zeros(100)])
    ref = psi.build_references(matrix, ("a", "b"), np.linspace(0, 1, 100))
    assert set(ref["features"]) == {"a", "b"}
    assert ref["n"] == 100 and ref["epsilon"] == psi.DEFAULT_EPSILON
    assert len(ref["score"]["expected"]) == 13
    json.dumps(ref)  # manifest-ready
