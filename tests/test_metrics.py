import numpy as np
import pytest

from mvcpaper.metrics import acc, ari, evaluate, hungarian_match, nmi


def test_perfect_up_to_permutation():
    t, p = [0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1]
    assert evaluate(t, p) == pytest.approx({"nmi": 1.0, "acc": 1.0, "ari": 1.0})


def test_hand_computed_values():
    # true {0,0,1,1}, predicted {0,0,0,1}:
    # H(T) = ln 2, H(C) = -(3/4 ln 3/4 + 1/4 ln 1/4), MI = 1/2 ln 4/3 + 1/4 ln 2/3 + 1/4 ln 2
    t, p = [0, 0, 1, 1], [0, 0, 0, 1]
    ht = np.log(2)
    hc = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    mi = 0.5 * np.log(4 / 3) + 0.25 * np.log(2 / 3) + 0.25 * np.log(2)
    assert nmi(t, p) == pytest.approx(mi / ((ht + hc) / 2))  # = 0.34372
    assert nmi(t, p) == pytest.approx(0.34372, abs=1e-5)
    assert acc(t, p) == pytest.approx(0.75)
    # ARI: sum C(n_ij,2) = 1; cluster pairs 3, class pairs 2, C(4,2) = 6 -> expected 1, max 2.5 -> 0
    assert ari(t, p) == pytest.approx(0.0)


def test_acc_with_more_clusters_than_classes():
    t = [0, 0, 0, 1, 1, 1]
    p = [0, 0, 1, 2, 2, 3]
    m = hungarian_match(t, p)
    assert m[0] == 0 and m[2] == 1 and sorted(m.values()).count(-1) == 2
    assert acc(t, p) == pytest.approx(4 / 6)


def test_acc_is_not_fooled_by_label_names():
    t = np.repeat(np.arange(5), 10)
    rng = np.random.default_rng(0)
    p = rng.permutation(5)[t]
    assert acc(t, p) == 1.0
    p[:7] = (p[:7] + 1) % 5
    assert acc(t, p) == pytest.approx(43 / 50)


def test_length_mismatch():
    with pytest.raises(ValueError, match="3 entries"):
        nmi([0, 1, 0], [0, 1])
