"""DeepCluster: sampler, empty clusters, Sobel, PIC, crops, learning, resume, bad input, DDP."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from mvcpaper.cli import main
from mvcpaper.cluster.deepcluster import (
    DeepCluster,
    DeepClusterNet,
    SobelFilter,
    kmeans_pseudolabels,
    layer_study,
    load_image_tensor,
    nearest_neighbours,
    pca_whiten,
    pic_cluster,
    random_resized_crop,
    top_activating,
    uniform_label_sampler,
)
from mvcpaper.data import load_dataset
from mvcpaper.metrics import nmi


def test_sampler_is_uniform_over_pseudolabels_and_covers_every_cluster():
    rng = np.random.default_rng(0)
    # very unbalanced: one cluster of 900, others of 1..50, and ids with gaps (empty clusters)
    sizes = [900, 50, 20, 5, 1, 1, 3]
    labels = np.concatenate([np.full(s, 2 * c) for c, s in enumerate(sizes)])
    rng.shuffle(labels)
    idx = uniform_label_sampler(labels, len(labels), rng)
    assert len(idx) == len(labels)
    counts = np.bincount(labels[idx], minlength=labels.max() + 1)
    nonempty = np.unique(labels)
    assert set(np.flatnonzero(counts)) == set(nonempty)  # every non-empty cluster, nothing else
    per = counts[nonempty]
    assert per.max() - per.min() <= 1 and per.sum() == len(labels)
    # a big cluster is drawn without replacement when it has enough members
    big = idx[labels[idx] == 0]
    assert len(np.unique(big)) == len(big)


@pytest.mark.parametrize("engine", ["faiss", "torch"])
def test_kmeans_never_leaves_a_cluster_empty(engine):
    rng = np.random.default_rng(0)
    # 60 points but only 6 distinct positions: Lloyd alone cannot fill 15 clusters
    X = torch.as_tensor(np.repeat(rng.normal(size=(6, 4)), 10, axis=0), dtype=torch.float32)
    labels, _ = kmeans_pseudolabels(X, 15, n_iter=20, seed=0, engine=engine)
    assert np.bincount(labels, minlength=15).min() >= 1
    # and on ordinary data with k close to n
    Y = torch.as_tensor(rng.normal(size=(40, 3)), dtype=torch.float32)
    labels, inertia = kmeans_pseudolabels(Y, 35, n_iter=20, seed=1, engine=engine)
    assert np.bincount(labels, minlength=35).min() >= 1 and np.isfinite(inertia)


def test_kmeans_engines_find_the_same_blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(20, 16))
    y = np.repeat(np.arange(20), 30)
    X = torch.as_tensor(centres[y] + rng.normal(size=(600, 16)), dtype=torch.float32)
    for init in ("random", "k-means++"):
        (a, loss_a), (b, loss_b) = (kmeans_pseudolabels(X, 20, 20, seed=3, init=init, engine=e)
                                    for e in ("faiss", "torch"))
        assert nmi(a, b) > 0.9 and abs(loss_a - loss_b) / loss_b < 0.5
    with pytest.raises(ValueError, match="engine"):
        kmeans_pseudolabels(X, 20, engine="sklearn")


def test_sobel_on_a_vertical_edge():
    x = torch.zeros(1, 3, 6, 8)
    x[..., 4:] = 1.0  # left half black, right half white, every channel
    out = SobelFilter()(x)
    assert out.shape == (1, 2, 6, 8)
    inner = out[0, :, 1:-1]  # rows away from the zero padding
    # cross-correlation with [[1,0,-1],[2,0,-2],[1,0,-1]]: 4 * (x[j-1] - x[j+1])
    expected_gx = torch.tensor([0, 0, 0, -4.0, -4.0, 0, 0, 4.0])  # last column: padding beyond the white
    assert torch.allclose(inner[0], expected_gx.expand(4, 8))
    assert torch.allclose(inner[1], torch.zeros(4, 8))  # no horizontal edge


def test_pic_recovers_separated_groups():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 5
    X = np.concatenate([c + rng.normal(size=(40, 16)) * 0.3 for c in centres])
    y = np.repeat(np.arange(4), 40)
    labels = pic_cluster(pca_whiten(torch.as_tensor(X), 8).numpy())
    for c in np.unique(labels):  # every PIC cluster lies inside one group
        assert len(np.unique(y[labels == c])) == 1
    assert np.bincount(labels).min() >= 2  # singletons were distributed
    assert nmi(y, labels) > 0.6


def test_pca_whiten_is_white_and_normalised():
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.normal(size=(500, 20)) * np.arange(1, 21), dtype=torch.float32)
    Z = pca_whiten(X, 5)
    assert Z.shape == (500, 5)
    assert torch.allclose(Z.norm(dim=1), torch.ones(500), atol=1e-5)


@pytest.mark.parametrize("dim,decay", [(20, 0.97), (150, 0.99)])  # randomised SVD path, full SVD path
def test_pca_whiten_matches_exact_pca(dim, decay):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 200)) * (decay ** np.arange(200)) @ np.linalg.qr(rng.normal(size=(200, 200)))[0]
    Xc = X - X.mean(0)
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    ref = (Xc @ Vt[:dim].T) / (S[:dim] / np.sqrt(len(X) - 1))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    Z = pca_whiten(torch.as_tensor(X, dtype=torch.float32), dim).numpy()
    # principal axes are defined up to sign: compare absolute values
    assert np.abs(np.abs(Z) - np.abs(ref)).max() < 5e-3


def test_random_resized_crop_identity_and_shapes():
    x = torch.rand(4, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    same = random_resized_crop(x, gen, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(same, x, atol=1e-5)
    out = random_resized_crop(x, gen)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("arch,size", [("alexnet", 64), ("vgg16", 32)])
def test_network_shapes(arch, size):
    net = DeepClusterNet(arch, size, sobel=True, fc_dim=64, n_outputs=7)
    x = torch.randint(0, 255, (2, 3, size, size), dtype=torch.uint8)
    assert net(x).shape == (2, 7) and net.embed(x).shape == (2, 64)
    convs = net.conv_outputs(x)
    assert len(convs) == (5 if arch == "alexnet" else 13)
    net.reset_top_layer(11)
    assert net(x).shape == (2, 11)


def test_bad_inputs_have_clear_messages(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        DeepClusterNet("alexnet", 32)
    with pytest.raises(KeyError, match="alexnet"):
        DeepClusterNet("resnet", 64)
    with pytest.raises(ValueError, match="images"):
        DeepCluster(n_clusters=2).fit(np.zeros((10, 5)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DeepCluster(n_clusters=2, progress=False).fit(np.full((4, 3, 64, 64), 2.0, np.float32))
    with pytest.raises(ValueError, match="larger than the number of samples"):
        DeepCluster(n_clusters=9, progress=False).fit(np.zeros((4, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="clusterer"):
        DeepCluster(n_clusters=2, clusterer="dbscan").fit(np.zeros((4, 64, 64, 3), np.uint8))


@pytest.fixture(scope="module")
def images():
    ds = load_dataset("synthetic", n_objects=6, n_poses=12, size=64, seed=0)
    return load_image_tensor(ds, 64, progress=False), ds.labels


SMALL = dict(arch="alexnet", input_size=64, fc_dim=256, pca_dim=32, batch_size=32, lr=0.02, progress=False)


def test_training_raises_nmi_over_the_random_network():
    """A short run on the synthetic set: the final clusters match the classes better than the
    clusters of the random network (epoch 0's, made before any training)."""
    ds = load_dataset("synthetic", n_objects=6, n_poses=20, size=64, seed=0)
    X, y = load_image_tensor(ds, 64, progress=False), ds.labels
    gains = []
    for seed in (0, 1):
        dc = DeepCluster(n_clusters=18, epochs=6, reassign=4, random_state=seed, **SMALL).fit(X, y)
        assert len(dc.history_) == 6 and np.isfinite([h["loss"] for h in dc.history_]).all()
        assert dc.labels_.shape == (len(y),) and len(np.unique(dc.labels_)) == 18
        assert dc.history_[-1]["loss"] < dc.history_[0]["loss"]
        gains.append(nmi(y, dc.labels_) - dc.history_[0]["nmi_true"])
    assert min(gains) > 0 and np.mean(gains) > 0.05, gains


def test_resume_gives_the_same_epochs_as_an_uninterrupted_run(images, tmp_path):
    X, y = images
    X = X[::2]
    y = y[::2]
    kw = dict(n_clusters=8, random_state=3, **SMALL)
    full = DeepCluster(epochs=3, **kw).fit(X, y)
    DeepCluster(epochs=2, checkpoint_dir=tmp_path, **kw).fit(X, y)  # "interrupted" after 2 epochs
    resumed = DeepCluster(epochs=3, checkpoint_dir=tmp_path, **kw).fit(X, y)
    assert [h["epoch"] for h in resumed.history_] == [0, 1, 2]
    for a, b in zip(full.history_, resumed.history_):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
        assert a["nmi_true"] == pytest.approx(b["nmi_true"], abs=1e-9)
    np.testing.assert_array_equal(full.labels_, resumed.labels_)
    sa, sb = full.model_.state_dict(), resumed.model_.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-5) for k in sa if not k.startswith("top_layer"))
    with pytest.raises(ValueError, match="other settings"):
        DeepCluster(epochs=3, checkpoint_dir=tmp_path, **{**kw, "lr": 0.1}).fit(X, y)
    with pytest.raises(ValueError, match="more than epochs=2"):
        DeepCluster(epochs=2, checkpoint_dir=tmp_path, **kw).fit(X, y)


def test_pic_clusterer_and_study_helpers(images):
    X, y = images
    dc = DeepCluster(n_clusters=10, epochs=1, clusterer="pic", **SMALL).fit(X, y)
    assert dc.history_[0]["n_clusters"] >= 2 and np.isnan(dc.history_[0]["nmi_prev"])
    nn_idx = nearest_neighbours(dc.model_, X, [0, 5], n=3)
    assert nn_idx.shape == (2, 3) and 0 not in nn_idx[0] and 5 not in nn_idx[1]
    top = top_activating(dc.model_, X, layer=4, filters=[0, 1, 2], n=4)
    assert top.shape == (3, 4) and top.max() < len(X)
    recs = layer_study(dc.model_, X, y, probe=True)
    assert [r["layer"] for r in recs] == [f"conv{i}" for i in range(1, 6)]
    assert all(0 <= r["probe_test_acc"] <= 1 for r in recs)


class _Payload:
    """Unpickling this runs code: what a planted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_checkpoint_never_runs_code(images, tmp_path):
    import json

    from mvcpaper.cache import CacheWarning, file_sha256

    X, y = images
    X, y = X[::2], y[::2]
    kw = dict(n_clusters=8, random_state=3, epochs=1, **SMALL)
    DeepCluster(checkpoint_dir=tmp_path, **kw).fit(X, y)
    ckpt, side = tmp_path / "last.pt", tmp_path / "last.pt.json"
    marker = tmp_path / "pwned"
    torch.save({"model": _Payload(marker)}, ckpt)  # replaced by a malicious pickle ...
    meta = json.loads(side.read_text())
    meta["sha256"] = file_sha256(ckpt)  # ... with a forged sidecar to match
    side.write_text(json.dumps(meta))
    with pytest.warns(CacheWarning, match="cannot be read"):
        dc = DeepCluster(checkpoint_dir=tmp_path, **{**kw, "epochs": 2}).fit(X, y)
    assert not marker.exists()  # weights_only refused the pickle
    assert [h["epoch"] for h in dc.history_] == [0, 1]  # trained from scratch instead
    torch.save({"model": _Payload(marker)}, ckpt)  # without a matching sidecar: never even unpickled
    with pytest.warns(CacheWarning, match="checksum"):
        DeepCluster(checkpoint_dir=tmp_path, **kw).fit(X, y)
    assert not marker.exists()


def test_fit_leaves_the_global_random_state_alone(images):
    X, y = images
    state = torch.get_rng_state()
    dc = DeepCluster(n_clusters=8, epochs=1, random_state=1, **SMALL).fit(X[::2], y[::2])
    assert torch.equal(torch.get_rng_state(), state)
    assert dc.embedding_.shape == (len(X[::2]), SMALL["fc_dim"])


# ----------------------------------------------------------------------------- several processes (torch DDP)

_DDP_ARGS = ["deepcluster", "synthetic", "--k", "12", "--epochs", "3", "--input-size", "64", "--fc-dim", "256",
             "--lr", "0.02", "--quiet"]


def _losses(out) -> np.ndarray:
    return pd.read_csv(out / "history.csv")["loss"].to_numpy()


@pytest.mark.slow
def test_two_gloo_processes_follow_one_process_with_the_same_global_batch(tmp_path):
    """``torchrun --nproc_per_node 2``: the loss per epoch within 10% of one process at the same
    global batch (measured 2-4%: per-process BatchNorm statistics and dropout masks differ on
    the CPU), and nearer to it than to one process at the per-process batch size."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "mvcpaper",
                          *_DDP_ARGS, "--batch-size", "32", "--out", str(tmp_path / "ddp")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert main([*_DDP_ARGS, "--batch-size", "32", "--out", str(tmp_path / "one")]) == 0
    assert main([*_DDP_ARGS, "--batch-size", "16", "--out", str(tmp_path / "half")]) == 0
    ddp, one, half = (_losses(tmp_path / d) for d in ("ddp", "one", "half"))
    np.testing.assert_allclose(ddp, one, rtol=0.10)
    assert abs(ddp[0] - one[0]) < abs(ddp[0] - half[0]) / 3
    history = pd.read_csv(tmp_path / "ddp" / "history.csv")
    assert (history["processes"] == 2).all() and len(pd.read_csv(tmp_path / "ddp" / "assignments.csv")) == 120
