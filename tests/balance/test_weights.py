"""Class weights agree with scikit-learn's "balanced" weights."""
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from thresher.balance.weights import class_weight_table, class_weights, weights_from_counts
from thresher.errors import UsageError

LABEL_SETS = [
    np.array([0, 0, 0, 1, 2, 2]),
    np.array(["spam", "ham", "ham", "ham", "eggs", "ham", "spam"]),
    np.array(["only"] * 5),
    np.random.default_rng(0).choice(["a", "b", "c", "d"], size=1000, p=[0.7, 0.2, 0.09, 0.01]),
    np.array([-3, 7, 7, 7, 7, 7, 7, 100]),
]


@pytest.mark.parametrize("labels", LABEL_SETS)
def test_table_matches_sklearn_balanced(labels):
    classes = np.unique(labels)
    expected = compute_class_weight("balanced", classes=classes, y=labels)
    table = class_weight_table(labels)
    assert list(table) == classes.tolist()
    np.testing.assert_allclose([table[c] for c in classes.tolist()], expected, rtol=1e-12)


@pytest.mark.parametrize("labels", LABEL_SETS)
@pytest.mark.parametrize("power", [1.0, 0.5, 0.0])
def test_row_weights_are_sklearn_weights_to_a_power(labels, power):
    classes = np.unique(labels)
    by_class = dict(zip(classes.tolist(), compute_class_weight("balanced", classes=classes, y=labels)))
    expected = np.array([by_class[v] for v in labels.tolist()]) ** power
    np.testing.assert_allclose(class_weights(labels, power), expected, rtol=1e-12)


def test_weights_from_counts_and_total_mass():
    labels = LABEL_SETS[3]
    _, counts = np.unique(labels, return_counts=True)
    w = weights_from_counts(counts)
    np.testing.assert_allclose(w, compute_class_weight("balanced", classes=np.unique(labels), y=labels))
    # balanced weights keep the total mass N and give every class N / C
    np.testing.assert_allclose(w * counts, len(labels) / len(counts))
    assert class_weights(labels).sum() == pytest.approx(len(labels))


@pytest.mark.parametrize("bad", [dict(labels=np.array([])), dict(labels=np.array([1, 2]), power=1.5),
                                 dict(labels=np.array([1, 2]), power=-0.1)])
def test_bad_arguments(bad):
    with pytest.raises(UsageError):
        class_weights(**bad)
    with pytest.raises(UsageError):
        weights_from_counts(np.array([3, 0]))
