"""Task metrics against scipy and scikit-learn."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from codonnt_eqx.finetune import accuracy, mcc, pearson, r2, spearman, task_metrics

# Small integers make ties (Spearman's average ranks) and constant inputs likely.
pairs = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float64, n, elements=st.integers(-3, 3).map(float)),
        hnp.arrays(np.float64, n, elements=st.floats(-1e3, 1e3)),
    )
)


@given(pairs)
@example((np.array([1.0, 1.0, 2.0]), np.array([3.0, 1.0, 2.0])))
@example((np.array([0.0] * 6 + [1.0]), np.full(7, 293.15761959)))  # mean leaves residues
def test_correlations_match_scipy(pair):
    x, y = pair
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        assert np.isnan(spearman(x, y)) and np.isnan(pearson(x, y))
        return
    np.testing.assert_allclose(spearman(x, y), stats.spearmanr(x, y).statistic, atol=1e-9)
    np.testing.assert_allclose(pearson(x, y), stats.pearsonr(x, y).statistic, atol=1e-9)


@given(pairs)
def test_r2_matches_sklearn(pair):
    prediction, target = pair
    np.testing.assert_allclose(
        r2(prediction, target), skm.r2_score(target, prediction), rtol=1e-9, atol=1e-9
    )


labels = st.integers(2, 5).flatmap(
    lambda k: st.tuples(
        st.just(k),
        st.integers(1, 60).flatmap(
            lambda n: st.tuples(
                hnp.arrays(np.int32, n, elements=st.integers(0, k - 1)),
                hnp.arrays(np.int32, n, elements=st.integers(0, k - 1)),
            )
        ),
    )
)


@given(labels)
@example((3, (np.array([0, 0, 0]), np.array([0, 1, 2]))))  # one predicted class: MCC 0
def test_accuracy_and_mcc_match_sklearn(case):
    k, (prediction, target) = case
    assert accuracy(prediction, target) == pytest.approx(skm.accuracy_score(target, prediction))
    assert mcc(prediction, target, k) == pytest.approx(
        skm.matthews_corrcoef(target, prediction), abs=1e-9
    )


def test_task_metrics_names_per_kind():
    x = np.array([0.1, 0.5, 0.3, 0.9])
    assert set(task_metrics("regression", x, x[::-1])) == {"spearman", "pearson", "r2", "mse"}
    assert task_metrics("regression", x, x)["spearman"] == pytest.approx(1.0)
    c = np.array([0, 1, 1, 0])
    assert task_metrics("per-residue", c, c, 2) == {"accuracy": 1.0, "mcc": 1.0}
    with pytest.raises(ValueError, match="predictions"):
        task_metrics("classification", c, c[:3], 2)
