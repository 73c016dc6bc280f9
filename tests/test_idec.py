import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from mvcpaper.cluster import make_method
from mvcpaper.cluster.idec import DEC, IDEC, soft_assign, target_distribution
from mvcpaper.metrics import nmi

SMALL = dict(hidden=(64, 64, 128), pretrain_steps=None, pretrain_epochs=40, max_epochs=60, batch_size=64,
             progress=False)


def curved_blobs(seed=0, n=480, k=6):
    """Blobs in 3-D seen through sinusoids of random projections, a few directions
    stretched: clusters are curved and unequally scaled, so Euclidean KMeans in the
    raw space splits them badly while a learned embedding can straighten them."""
    rng = np.random.default_rng(seed)
    Z, y = make_blobs(n, n_features=3, centers=k, cluster_std=1.6, center_box=(-6, 6), random_state=seed)
    X = np.concatenate([np.sin(Z @ rng.normal(size=(3, 40)) / 4), 0.3 * Z @ rng.normal(size=(3, 8))], 1)
    X[:, :5] *= 4
    return X.astype(np.float32), y


def test_soft_assignment_hand_values():
    q = soft_assign(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    torch.testing.assert_close(q, torch.tensor([[2 / 3, 1 / 3]]))


def test_target_distribution_hand_values():
    q = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    # f = (1.2, 0.8); row 1: (0.64/1.2, 0.04/0.8) normalised; row 2: (0.16/1.2, 0.36/0.8) normalised
    r1 = torch.tensor([0.64 / 1.2, 0.04 / 0.8])
    r2 = torch.tensor([0.16 / 1.2, 0.36 / 0.8])
    torch.testing.assert_close(target_distribution(q), torch.stack([r1 / r1.sum(), r2 / r2.sum()]))
    # sharper than q: the larger entry of every row grows
    assert (target_distribution(q).max(1).values > q.max(1).values).all()


@pytest.mark.parametrize("cls", [IDEC, DEC])
def test_beats_kmeans_on_curved_clusters(cls):
    X, y = curved_blobs(0)
    km = np.mean([nmi(y, make_method("kmeans", 6, seed=s).fit_predict(X)) for s in range(3)])
    model = cls(6, random_state=0, **SMALL).fit(X)
    score = nmi(y, model.labels_)
    assert score > km + 0.02, (score, km)
    assert model.transform(X).shape == (len(X), 10)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    assert model.history_ and model.history_[0]["epoch"] == 0


def test_same_seed_same_labels():
    X, _ = curved_blobs(1, n=200)
    kw = dict(SMALL, pretrain_epochs=5, max_epochs=5)
    a = IDEC(6, random_state=3, **kw).fit_predict(X)
    b = IDEC(6, random_state=3, **kw).fit_predict(X)
    np.testing.assert_array_equal(a, b)


def test_denoising_pretraining_is_seeded_and_changes_the_start():
    X, _ = curved_blobs(1, n=200)
    kw = dict(SMALL, pretrain_epochs=5, max_epochs=1)
    clean = IDEC(6, random_state=3, **kw).fit(X)
    a = IDEC(6, random_state=3, pretrain_noise=0.2, **kw).fit(X)
    b = IDEC(6, random_state=3, pretrain_noise=0.2, **kw).fit(X)
    np.testing.assert_array_equal(a.embedding_, b.embedding_)
    assert not np.allclose(a.embedding_, clean.embedding_)
    with pytest.raises(ValueError, match="pretrain_noise must be in"):
        IDEC(6, pretrain_noise=1.0, **kw).fit(X)


def test_bad_input():
    X, _ = curved_blobs(1, n=50)
    with pytest.raises(ValueError, match="larger than the number of samples"):
        IDEC(60, **SMALL).fit(X)
    bad = X.copy()
    bad[3, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        IDEC(3, **SMALL).fit(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_path_runs():
    X, y = curved_blobs(0, n=200)
    m = IDEC(6, device="cuda", **dict(SMALL, pretrain_epochs=5, max_epochs=5)).fit(X)
    assert m.labels_.shape == (200,)


@pytest.mark.parametrize("cls", [IDEC, DEC])
def test_clustering_stage_keeps_its_start(cls):
    """Logged NMI per target update; the clustering never ends below KMeans on its own start."""
    X, y = curved_blobs(2)
    model = cls(6, random_state=0, **SMALL).fit(X, y)
    logged = [h["nmi"] for h in model.history_ if "nmi" in h]
    assert logged and logged[0] == pytest.approx(nmi(y, model.init_labels_))
    assert nmi(y, model.labels_) >= logged[0] - 0.01, logged


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="flush-to-zero is an x86 mode here")
def test_import_flushes_denormals_in_every_cpu_thread():
    # Adam's moments decay into denormals, 20x slower on x86; torch's worker threads copy
    # the mode when they start, so the import must set it before they exist
    code = ("import mvcpaper, numpy as np, torch; torch.set_num_threads(2); "
            "d = torch.from_numpy(np.full(1 << 20, 1e-39, dtype=np.float32)); print(int((d * 1.0 != 0).sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "0"


def test_target_update_interval_is_counted_in_updates():
    """The same number of updates between target renewals whatever the set's size."""
    for n, interval in [(200, 35), (480, 18), (640, 14)]:  # ceil(140 / ceil(n / 64)) epochs
        X, _ = curved_blobs(0, n=n)
        model = IDEC(6, **dict(SMALL, pretrain_epochs=2, max_epochs=40, tol=0.0)).fit(X)
        assert model.update_interval_ == interval
        assert [h["epoch"] for h in model.history_ if "changed" in h] == list(range(0, 40, interval))
    per_epoch = IDEC(6, **dict(SMALL, pretrain_epochs=2, max_epochs=3, tol=0.0, update_steps=None)).fit(X)
    assert [h["epoch"] for h in per_epoch.history_ if "changed" in h] == [0, 1, 2]
