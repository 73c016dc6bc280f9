"""DeepCluster (Caron et al., ECCV 2018): learn a convnet from its own clusters.

Every epoch alternates two steps:

1. **Cluster.** Run the current network over every image (whole image, eval mode),
   take the penultimate fully-connected output, PCA-whiten it to ``pca_dim``
   dimensions, L2-normalise the rows and cluster them into ``n_clusters``
   pseudo-classes (k-means with empty clusters re-seeded, or PIC: power iteration
   clustering on a kNN graph).
2. **Learn.** Re-initialise the classifier's top layer for the new pseudo-classes and
   train the whole network for one pass to predict them (cross-entropy, SGD with
   momentum), drawing images uniformly over the pseudo-classes (so a few huge
   clusters cannot dominate), with random resized crops and flips.

Optional Sobel preprocessing (grey image, then two fixed Sobel filters) removes colour,
which the paper found to be an easy shortcut. The architectures are AlexNet with
batch norm and VGG16 with batch norm; their fully-connected input is sized from
``input_size``, so 64-128 px images train on a CPU.

Images are decoded once into a uint8 tensor (:func:`load_image_tensor`); cropping
and flipping run as batched tensor operations, on CUDA when present. Every epoch's
randomness is drawn from ``(random_state, epoch)``, so resuming from a checkpoint
(written atomically after each epoch) gives exactly the epochs an uninterrupted run
would have given.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from torch import nn

from .._utils import resolve_device, seeded, tqdm
from ..cache import read_entry, write_entry
from ..errors import UnknownNameError
from ..metrics import nmi
from ..preprocessing import l2_normalize
from ._base import ClusterBase, check_n_clusters
from .kmeans import fill_empty_clusters, kmeans_plusplus, lloyd

__all__ = ["DeepCluster", "DeepClusterNet", "SobelFilter", "load_image_tensor", "pca_whiten",
           "kmeans_pseudolabels", "pic_cluster", "uniform_label_sampler", "random_resized_crop",
           "ARCHITECTURES", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: conv layers: (out channels, kernel, stride, padding) or "M" (3x3/2 max-pool for AlexNet, 2x2/2 for VGG)
ARCHITECTURES = {
    "alexnet": [(96, 11, 4, 2), "M", (256, 5, 1, 2), "M", (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1), "M"],
    "vgg16": [(64, 3, 1, 1), (64, 3, 1, 1), "M", (128, 3, 1, 1), (128, 3, 1, 1), "M",
              (256, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), "M", (512, 3, 1, 1), (512, 3, 1, 1),
              (512, 3, 1, 1), "M", (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1), "M"],
}


# ----------------------------------------------------------------------------- images

def load_image_tensor(dataset, size: int, progress: bool = True) -> torch.Tensor:
    """Every image of ``dataset`` resized to ``size`` x ``size``: a uint8 tensor (n, 3, size, size)."""

    out = torch.empty((len(dataset), 3, size, size), dtype=torch.uint8)
    for i in tqdm(range(len(dataset)), desc=f"decode {dataset.name} at {size}px", unit="img", disable=not progress):
        img = dataset.load_image(i).resize((size, size), Image.BILINEAR)
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
    return out


def random_resized_crop(x: torch.Tensor, generator: torch.Generator, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3),
                        flip: bool = True) -> torch.Tensor:
    """A random resized crop (and horizontal flip) per image of a float batch, as one ``grid_sample``.

    Each image gets a crop covering ``scale`` of its area with aspect ratio in ``ratio``
    (log-uniform), resized back to the input size: torchvision's ``RandomResizedCrop``
    drawn independently per image, but batched (and on the batch's device).
    """
    n = x.shape[0]
    u = torch.rand((n, 4), generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    r = torch.exp(logr)
    w = torch.sqrt(area * r).clamp(max=1.0)  # crop width and height as fractions of the image
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (2 * u[:, 2] - 1) * (1 - w)  # centre in [-1, 1] coordinates, crop inside the image
    cy = (2 * u[:, 3] - 1) * (1 - h)
    sx = w.clone()
    if flip:
        sx = torch.where(torch.rand(n, generator=generator) < 0.5, -sx, sx)
    theta = torch.zeros((n, 2, 3))
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# ----------------------------------------------------------------------------- network

class SobelFilter(nn.Module):
    """Grey image (channel mean), then the two fixed 3x3 Sobel filters: (n, 3, H, W) -> (n, 2, H, W)."""

    def __init__(self):
        super().__init__()
        grey = torch.full((1, 3, 1, 1), 1.0 / 3.0)
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("grey", grey)
        self.register_buffer("sobel", torch.stack([gx, gx.T])[:, None])

    def forward(self, x):
        return F.conv2d(F.conv2d(x, self.grey), self.sobel, padding=1)


class DeepClusterNet(nn.Module):
    """AlexNet or VGG16, both with batch norm, sized for ``input_size`` px inputs.

    ``features`` (conv blocks) -> flatten -> ``classifier`` (two fully-connected layers
    of ``fc_dim`` with dropout; the last ReLU is applied in :meth:`forward`, so
    :meth:`embed` returns the pre-activation output DeepCluster clusters) ->
    ``top_layer`` (one output per pseudo-class, replaced every epoch).
    """

    def __init__(self, arch: str = "alexnet", input_size: int = 64, sobel: bool = True, fc_dim: int = 4096,
                 n_outputs: int = 10):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise UnknownNameError("architecture", arch, ARCHITECTURES)
        self.arch, self.input_size = arch, input_size
        self.sobel = SobelFilter() if sobel else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        layers, c = [], 2 if sobel else 3
        pool = nn.MaxPool2d(3, 2) if arch == "alexnet" else nn.MaxPool2d(2, 2)
        for spec in ARCHITECTURES[arch]:
            if spec == "M":
                layers.append(pool)
            else:
                out, k, s, p = spec
                layers += [nn.Conv2d(c, out, k, s, p), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        try:
            with torch.no_grad():
                shape = self.features.eval()(torch.zeros(1, 2 if sobel else 3, input_size, input_size)).shape
        except RuntimeError:  # a pooling window larger than what is left of the image
            shape = (0, 0, 0, 0)
        self.features.train()
        if shape[-1] < 1:
            raise ValueError(f"input_size={input_size} is too small for {arch} (its conv stack shrinks it to "
                             f"nothing); use at least 64 px")
        self.feature_shape = tuple(shape[1:])
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(int(np.prod(shape[1:])), fc_dim), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(fc_dim, fc_dim))
        self.top_layer = nn.Linear(fc_dim, n_outputs)
        # He init for the convs (as the reference models) and for the fully-connected layers:
        # the reference's N(0, 0.01) keeps the signal only at its own sizes (9216 -> 4096 ->
        # 4096); at 64 px with 256 inputs it shrinks the logits to ~1e-5 and nothing learns
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.top_layer.weight, 0, 0.01)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images -> normalised (and Sobel-filtered) network input."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        x = (x - self.mean) / self.std
        return self.sobel(x) if self.sobel is not None else x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's output before its last ReLU (what DeepCluster clusters)."""
        return self.classifier(torch.flatten(self.features(self.preprocess(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top_layer(F.relu(self.embed(x)))

    def conv_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every conv block (after its ReLU), for probes and filter visualisation."""
        outs, h = [], self.preprocess(x)
        for m in self.features:
            h = m(h)
            if isinstance(m, nn.ReLU):
                outs.append(h)
        return outs

    def reset_top_layer(self, n_outputs: int, generator: torch.Generator | None = None):
        """A fresh top layer for ``n_outputs`` pseudo-classes (weights N(0, 0.01), zero bias)."""
        dev = self.mean.device
        top = nn.Linear(self.top_layer.in_features, n_outputs)
        with torch.no_grad():
            top.weight.copy_(torch.randn(top.weight.shape, generator=generator) * 0.01)
            top.bias.zero_()
        self.top_layer = top.to(dev)
        return self.top_layer


@torch.no_grad()
def _batched(fn, images: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    outs = [fn(images[s:s + batch_size].to(device)).float().cpu() for s in range(0, len(images), batch_size)]
    return torch.cat(outs)


# ----------------------------------------------------------------------------- clustering

def pca_whiten(X: torch.Tensor, dim: int = 256, eps: float = 1e-5, seed: int = 0, svd: str = "auto") -> torch.Tensor:
    """PCA to ``dim`` components, whitened (unit variance each), then L2-normalised rows.

    When ``dim`` is well below the data's rank the principal axes come from a randomised
    SVD (``torch.svd_lowrank``, 4 power iterations, drawn from ``seed`` without touching
    the global random state): 3600 x 4096 features to 256 dimensions take ~1 s instead of
    ~11 s for the full SVD here (benchmarks/bench_deepcluster.py), with the same leading axes. ``svd="full"`` or
    ``"randomized"`` forces one method.
    """
    if svd not in ("auto", "full", "randomized"):
        raise ValueError(f"svd must be 'auto', 'full' or 'randomized', got {svd!r}")
    X = X.float()
    X = X - X.mean(0, keepdim=True)
    n, d = X.shape
    dim = min(dim, n - 1, d)
    q = dim + 16
    if svd == "randomized" or (svd == "auto" and 2 * q <= min(n, d)):
        q = min(q, n, d)
        devices = [X.device] if X.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            _, S, V = torch.svd_lowrank(X, q=q, niter=4)
        axes = V[:, :dim]
    else:  # SVD of the centred data: the right singular vectors are the principal axes
        _, S, Vh = torch.linalg.svd(X, full_matrices=False)
        axes = Vh[:dim].T
    var = S[:dim] ** 2 / max(n - 1, 1)
    Z = (X @ axes) / torch.sqrt(var + eps)
    return F.normalize(Z, dim=1)


def kmeans_pseudolabels(X: torch.Tensor, k: int, n_iter: int = 20, seed: int = 0,
                        init: str = "random") -> tuple[np.ndarray, float]:
    """k-means (``n_iter`` Lloyd steps) that never leaves a cluster empty.

    ``init="random"`` starts from k distinct random points, as the reference code's
    faiss k-means does (cheap at large k); ``"k-means++"`` seeds greedily (sequential
    in k: 25 s for k=1000 on 7200 points on the CPU here).

    Lloyd's steps re-seed an empty cluster with the point farthest from its centre; if
    the final assignment still leaves a cluster empty (duplicated points), the point
    farthest from its centre in the largest cluster is moved into it. Returns the labels
    and the mean squared distance to the assigned centre.
    """

    n = X.shape[0]
    check_n_clusters(k, n)
    gen = torch.Generator().manual_seed(int(seed))
    if init == "random":
        C0 = X[torch.randperm(n, generator=gen)[:k].to(X.device)].clone()
    elif init == "k-means++":
        C0 = kmeans_plusplus(X, k, gen)
    else:
        raise ValueError(f"init must be 'random' or 'k-means++', got {init!r}")
    _, labels, d, _ = lloyd(X, C0, n_iter, tol=0.0)
    labels, d = fill_empty_clusters(labels.cpu().numpy(), d.cpu().numpy(), k)
    return labels, float(d.mean())


def pic_cluster(X: np.ndarray, n_neighbors: int = 5, sigma: float = 0.2, alpha: float = 0.001,
                n_iter: int = 200, distribute_singletons: bool = True) -> np.ndarray:
    """Power iteration clustering (Lin & Cohen 2010) as DeepCluster runs it.

    A symmetric kNN graph with Gaussian weights ``exp(-d^2 / sigma^2)``; a random walk
    with restart (``v <- alpha W v + (1 - alpha) / n``, L1-normalised) for ``n_iter``
    steps; then every node points to the neighbour ``j`` maximising ``W_ij (v_j - v_i)``
    (itself when none is higher) and each cluster is the basin of a local maximum of
    ``v``. The number of clusters is found, not set. Singletons join the cluster of
    their nearest non-singleton neighbour.
    """

    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    kn = min(n_neighbors, n - 1)
    dist, idx = NearestNeighbors(n_neighbors=kn + 1).fit(X).kneighbors(X)
    dist, idx = dist[:, 1:], idx[:, 1:]  # drop each point itself
    A = sp.csr_matrix((np.exp(-(dist ** 2) / sigma ** 2).ravel(), idx.ravel(), np.arange(0, n * kn + 1, kn)),
                      shape=(n, n))
    W = (A + A.T).tocsr()
    v = np.full(n, 1.0 / n)
    for _ in range(n_iter):
        v = alpha * (W.T @ v) + (1 - alpha) / n
        v /= v.sum()
    # pointer to the neighbour of largest weighted ascent (itself when no neighbour is higher)
    Wc = W.tocoo()
    gain = Wc.data * (v[Wc.col] - v[Wc.row])
    order = np.lexsort((gain, Wc.row))  # by row, then gain: each row's best edge comes last
    rows, cols, gains = Wc.row[order], Wc.col[order], gain[order]
    last = np.r_[rows[1:] != rows[:-1], True]
    take = last & (gains > 0)
    pointer = np.arange(n)
    pointer[rows[take]] = cols[take]
    root = pointer.copy()  # follow the pointers to a local maximum (pointer jumping)
    for _ in range(int(np.ceil(np.log2(n + 1))) + 1):
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    _, labels = np.unique(root, return_inverse=True)
    if distribute_singletons:
        sizes = np.bincount(labels)
        for i in np.flatnonzero(sizes[labels] == 1):
            for j in idx[i]:
                if sizes[labels[j]] > 1:
                    sizes[labels[i]] -= 1
                    labels[i] = labels[j]
                    sizes[labels[j]] += 1
                    break
        _, labels = np.unique(labels, return_inverse=True)
    return labels


def uniform_label_sampler(labels: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``n_samples`` indices drawn uniformly over the non-empty pseudo-classes.

    Each non-empty class gets ``n_samples // m`` or one more draws (``m`` classes), from
    its own members (with replacement only where it has fewer members than draws), in
    a random order. A class of 3 images and a class of 3000 are seen equally often.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    m = len(classes)
    counts = np.full(m, n_samples // m)
    counts[rng.choice(m, n_samples - counts.sum(), replace=False)] += 1
    out = []
    for c, cnt in zip(classes, counts):
        members = np.flatnonzero(labels == c)
        out.append(rng.choice(members, cnt, replace=cnt > len(members)))
    out = np.concatenate(out)
    return out[rng.permutation(len(out))]


# ----------------------------------------------------------------------------- the method

class DeepCluster(ClusterBase):
    """DeepCluster: alternate clustering a convnet's features and training it on the clusters.

    Parameters
    ----------
    n_clusters : int
        k, the number of pseudo-classes (for k-means; PIC finds its own number). Small
        data needs over-clustering (the paper: k of about 10x the classes).
    arch : {"alexnet", "vgg16"}
    input_size : int
        Images are resized to this square size (64-128 px train on a CPU).
    sobel : bool
        Grey + fixed Sobel filters before the first conv layer.
    clusterer : {"kmeans", "pic"}
    epochs : int
        Cluster-then-train epochs.
    pca_dim : int
        PCA-whitening dimension before clustering (256 in the paper).
    fc_dim : int
        Width of the two fully-connected layers (4096 in the paper).
    batch_size, lr, momentum, weight_decay
        SGD settings (paper: 256, 0.05, 0.9, 1e-5).
    kmeans_iter : int
        Lloyd iterations per epoch (20 in the paper).
    reassign : float
        Images drawn per epoch, as a multiple of the data set size (the reference code's
        ``--reassign``, 1 on ImageNet). On small data one pass is only a few updates,
        too few for a freshly initialised top layer to learn the new pseudo-classes; a
        larger value trains longer between two clusterings.
    crop_scale : tuple
        Area range of the random resized crops.
    checkpoint_dir : path, optional
        Where ``last.pt`` is written after every epoch (atomically); with ``resume=True``
        a later ``fit`` continues from it instead of starting again.
    device : str
        ``"auto"`` picks CUDA when present.
    random_state : int

    Attributes
    ----------
    labels_ : ndarray
        The clustering of the final network's features (k-means or PIC).
    embedding_ : ndarray (n_images, fc_dim)
        Those features (:meth:`transform` of the training images).
    history_ : list of dict
        Per epoch: ``epoch, loss, n_clusters, nmi_true`` (when ``y`` is given to ``fit``),
        ``nmi_prev`` (against the previous epoch's assignment), ``clustering_loss``,
        ``seconds_extract, seconds_cluster, seconds_train, seconds``.
    model_ : DeepClusterNet
        The trained network (``initial_state_`` holds its random initialisation).
    """

    def __init__(self, n_clusters: int = 100, arch: str = "alexnet", input_size: int = 64, sobel: bool = True,
                 clusterer: str = "kmeans", epochs: int = 10, pca_dim: int = 256, fc_dim: int = 4096,
                 batch_size: int = 256, lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 1e-5,
                 kmeans_iter: int = 20, crop_scale: tuple = (0.2, 1.0), pic_neighbors: int = 5, reassign: float = 1.0,
                 top_momentum: float = 0.0,
                 checkpoint_dir=None, resume: bool = True, device: str = "auto", random_state: int = 0,
                 progress: bool = True):
        self.n_clusters = n_clusters
        self.arch = arch
        self.input_size = input_size
        self.sobel = sobel
        self.clusterer = clusterer
        self.epochs = epochs
        self.pca_dim = pca_dim
        self.fc_dim = fc_dim
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.kmeans_iter = kmeans_iter
        self.crop_scale = crop_scale
        self.pic_neighbors = pic_neighbors
        self.reassign = reassign
        self.top_momentum = top_momentum
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.device = device
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ inputs
    def _images(self, X) -> torch.Tensor:
        """An ImageDataset, or images as (n, 3, H, W) / (n, H, W, 3) arrays -> uint8 (n, 3, s, s)."""
        if hasattr(X, "load_image"):
            return load_image_tensor(X, self.input_size, progress=self.progress)
        t = torch.as_tensor(np.asarray(X))
        if t.ndim != 4 or 3 not in (t.shape[1], t.shape[-1]):
            raise ValueError(f"DeepCluster needs images: an ImageDataset or an (n, 3, H, W) / (n, H, W, 3) array; "
                             f"got shape {tuple(t.shape)}")
        if t.shape[1] != 3:
            t = t.permute(0, 3, 1, 2)
        if t.dtype != torch.uint8:
            t = t.float()
            if not torch.isfinite(t).all():
                raise ValueError("the images have NaN or infinite values")
            if t.min() < 0 or t.max() > 1:
                raise ValueError("float images must lie in [0, 1] (or pass uint8 in [0, 255])")
            t = (t * 255).round().to(torch.uint8)
        if t.shape[-1] != self.input_size or t.shape[-2] != self.input_size:
            t = F.interpolate(t.float(), size=(self.input_size, self.input_size), mode="bilinear",
                              antialias=True, align_corners=False).round().clamp(0, 255).to(torch.uint8)
        return t.contiguous()

    def _config(self) -> dict:
        keys = ("n_clusters", "arch", "input_size", "sobel", "clusterer", "pca_dim", "fc_dim", "batch_size", "lr",
                "momentum", "weight_decay", "kmeans_iter", "crop_scale", "pic_neighbors", "reassign", "top_momentum",
                "random_state")
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in ((k, getattr(self, k)) for k in keys)}

    # ------------------------------------------------------------------ steps
    def _seed(self, epoch: int) -> tuple[torch.Generator, np.random.Generator]:
        seed = int(self.random_state) * 100003 + int(epoch)
        torch.manual_seed(seed)  # dropout (fit runs inside `seeded`: the caller's state is restored after)
        return torch.Generator().manual_seed(seed), np.random.default_rng(seed)

    def features(self, images: torch.Tensor) -> np.ndarray:
        """The network's clustering features (:meth:`DeepClusterNet.embed`) of every image."""
        self.model_.eval()
        dev = self.model_.mean.device
        return _batched(self.model_.embed, images, dev, max(self.batch_size, 256)).numpy()

    def _cluster(self, feats: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        dev = self.model_.mean.device
        Z = pca_whiten(torch.as_tensor(feats, device=dev), self.pca_dim)
        if self.clusterer == "kmeans":
            return kmeans_pseudolabels(Z, self.n_clusters, self.kmeans_iter, seed)
        return pic_cluster(Z.cpu().numpy(), n_neighbors=self.pic_neighbors), float("nan")

    def _train_epoch(self, images, labels, gen, rng, bar=None) -> float:
        model, dev = self.model_, self.model_.mean.device
        n_out = int(labels.max()) + 1
        top = model.reset_top_layer(n_out, gen)
        top_opt = torch.optim.SGD(top.parameters(), lr=self.lr, momentum=self.top_momentum, weight_decay=self.weight_decay)
        order = uniform_label_sampler(labels, max(1, int(round(self.reassign * len(labels)))), rng)
        target = torch.as_tensor(labels, dtype=torch.long)
        model.train()
        total = 0.0
        for s in range(0, len(order), self.batch_size):
            idx = torch.as_tensor(order[s:s + self.batch_size])
            x = images[idx].to(dev).float().div_(255)
            x = random_resized_crop(x, gen, scale=tuple(self.crop_scale))
            loss = F.cross_entropy(model(x), target[idx].to(dev))
            self.optimizer_.zero_grad(set_to_none=True)
            top_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_.step()
            top_opt.step()
            total += loss.item() * len(idx)
            if bar is not None:
                bar.update(len(idx))
        return total / len(order)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self) -> Path | None:
        return Path(self.checkpoint_dir) / "last.pt" if self.checkpoint_dir else None

    def _save(self, epoch: int, last_labels):
        """The state after ``epoch`` epochs: tensors in ``last.pt`` (loaded with ``weights_only``,
        so a planted file cannot run code), the rest as JSON in its sidecar."""
        path = self._checkpoint_path()
        if path is None:
            return
        body = {k: v for k, v in self.model_.state_dict().items() if not k.startswith("top_layer.")}
        tensors = {"model": body, "optimizer": self.optimizer_.state_dict(), "initial_state": self.initial_state_,
                   "last_labels": torch.as_tensor(np.asarray(last_labels, dtype=np.int64))}
        write_entry(path, lambda tmp: torch.save(tensors, tmp),
                    {"epoch": epoch, "config": self._config(), "history": self.history_})

    def _load(self) -> tuple[int, np.ndarray | None]:
        path = self._checkpoint_path()
        if path is None or not self.resume:
            return 0, None
        got = read_entry(path, lambda p: torch.load(p, map_location="cpu", weights_only=True))
        if got is None:
            return 0, None
        tensors, meta = got
        if meta["config"] != self._config():
            diff = {k: (meta["config"].get(k), v) for k, v in self._config().items() if meta["config"].get(k) != v}
            raise ValueError(f"the checkpoint {path} was written with other settings {diff} (checkpoint, now); "
                             "use another checkpoint_dir or resume=False")
        if int(meta["epoch"]) > self.epochs:
            raise ValueError(f"the checkpoint {path} holds {meta['epoch']} epochs, more than epochs={self.epochs}; "
                             "ask for at least as many epochs, or use another checkpoint_dir")
        self.model_.load_state_dict(tensors["model"], strict=False)
        self.optimizer_.load_state_dict(tensors["optimizer"])
        self.initial_state_ = tensors["initial_state"]
        self.history_ = list(meta["history"])
        return int(meta["epoch"]), tensors["last_labels"].numpy()

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Train on images ``X`` (an ImageDataset or an image array).

        ``y`` (true labels, optional) is only logged (``nmi_true`` per epoch), never used
        for training.
        """
        with seeded(self.random_state, resolve_device(self.device)):  # init and dropout, without the global RNG
            return self._fit(X, y)

    def _fit(self, X, y):
    

        if self.clusterer not in ("kmeans", "pic"):
            raise ValueError(f"clusterer must be 'kmeans' or 'pic', got {self.clusterer!r}")
        images = self._images(X)
        n = len(images)
        check_n_clusters(self.n_clusters, n)
        if y is not None and len(y) != n:
            raise ValueError(f"y has {len(y)} labels for {n} images")
        dev = resolve_device(self.device)
        self.model_ = DeepClusterNet(self.arch, self.input_size, self.sobel, self.fc_dim, self.n_clusters).to(dev)
        self.initial_state_ = {k: v.detach().cpu().clone() for k, v in self.model_.state_dict().items()
                               if not k.startswith("top_layer.")}
        body = [p for name, p in self.model_.named_parameters() if not name.startswith("top_layer.")]
        self.optimizer_ = torch.optim.SGD(body, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        self.history_ = []
        start, last = self._load()
        bar = tqdm(total=(self.epochs - start) * max(1, int(round(self.reassign * n))), desc=f"DeepCluster {self.arch}", unit="img", leave=False,
                   disable=not self.progress)
        for epoch in range(start, self.epochs):
            gen, rng = self._seed(epoch)
            t0 = time.perf_counter()
            feats = self.features(images)
            t1 = time.perf_counter()
            labels, closs = self._cluster(feats, int(rng.integers(2 ** 31)))
            t2 = time.perf_counter()
            loss = self._train_epoch(images, labels, gen, rng, bar)
            t3 = time.perf_counter()
            rec = {"epoch": epoch, "loss": loss, "n_clusters": int(len(np.unique(labels))),
                   "clustering_loss": closs,
                   "nmi_true": nmi(y, labels) if y is not None else float("nan"),
                   "nmi_prev": nmi(last, labels) if last is not None else float("nan"),
                   "seconds_extract": t1 - t0, "seconds_cluster": t2 - t1, "seconds_train": t3 - t2,
                   "seconds": t3 - t0}
            self.history_.append(rec)
            bar.set_postfix(loss=f"{loss:.3f}", nmi=f"{rec['nmi_true']:.3f}")
            last = labels
            self._save(epoch + 1, last)
        bar.close()
        gen, rng = self._seed(self.epochs)
        self.embedding_ = self.features(images)
        labels, _ = self._cluster(self.embedding_, int(rng.integers(2 ** 31)))
        self._set_labels(labels, expected=self.clusterer == "kmeans")
        return self

    def transform(self, X) -> np.ndarray:
        """The trained network's clustering features (fc output before ReLU) of images ``X``."""
        return self.features(self._images(X))

    def random_network(self) -> DeepClusterNet:
        """The same network with its random initial weights (the baseline of every DeepCluster study)."""
        net = DeepClusterNet(self.arch, self.input_size, self.sobel, self.fc_dim, self.n_clusters)
        net.load_state_dict(self.initial_state_, strict=False)
        return net.to(self.model_.mean.device).eval()


# ----------------------------------------------------------------------------- studies of a trained network

@torch.no_grad()
def conv_features(net: DeepClusterNet, images: torch.Tensor, max_dim: int = 2048, batch_size: int = 256,
                  layers=None) -> list[np.ndarray]:
    """Every conv block's output (or those in ``layers``, list indices), average-pooled to at most ``max_dim`` values.

    Each map of C channels is pooled to the largest s x s grid with C * s^2 <= max_dim
    (at least 1 x 1), then flattened: the frozen features a linear probe reads.
    """
    net.eval()
    dev = net.mean.device
    outs: list[list[torch.Tensor]] = []
    for s in range(0, len(images), batch_size):
        maps = net.conv_outputs(images[s:s + batch_size].to(dev))
        if layers is not None:  # negative indices count from the last conv layer
            maps = [maps[i] for i in layers]
        if not outs:
            outs = [[] for _ in maps]
        for store, m in zip(outs, maps):
            c, h = m.shape[1], m.shape[-1]
            g = max(1, min(h, int(math.sqrt(max_dim / c))))
            store.append(F.adaptive_avg_pool2d(m, g).flatten(1).float().cpu())
    return [torch.cat(o).numpy() for o in outs]


def linear_probe(features: np.ndarray, labels, seed: int = 0, test_size: float = 0.5, C: float = 1.0) -> dict:
    """Logistic regression on frozen features: train on a stratified half, accuracy on the other half."""

    Xtr, Xte, ytr, yte = train_test_split(features, np.asarray(labels), test_size=test_size, random_state=seed,
                                          stratify=labels)
    scaler = StandardScaler().fit(Xtr)
    clf = LogisticRegression(C=C, max_iter=300).fit(scaler.transform(Xtr), ytr)
    return {"probe_train_acc": float(clf.score(scaler.transform(Xtr), ytr)),
            "probe_test_acc": float(clf.score(scaler.transform(Xte), yte))}


def layer_study(net: DeepClusterNet, images: torch.Tensor, labels, seed: int = 0, max_dim: int = 2048,
                probe: bool = True, n_init: int = 1) -> list[dict]:
    """Per conv layer: KMeans NMI with the true number of classes (best of ``n_init`` starts), and linear-probe accuracy."""


    labels = np.asarray(labels)
    k = len(np.unique(labels))
    recs = []
    for i, f in enumerate(conv_features(net, images, max_dim)):
        km = KMeans(k, n_init=n_init, random_state=seed).fit_predict(l2_normalize(f))
        rec = {"layer": f"conv{i + 1}", "dim": f.shape[1], "kmeans_nmi": nmi(labels, km)}
        if probe:
            rec.update(linear_probe(f, labels, seed))
        recs.append(rec)
    return recs


@torch.no_grad()
def nearest_neighbours(net: DeepClusterNet, images: torch.Tensor, queries, n: int = 5, layer: int = -1) -> np.ndarray:
    """For each query index, the ``n`` nearest other images (cosine, pooled conv ``layer`` features)."""

    f = l2_normalize(conv_features(net, images, max_dim=4096, layers=[layer])[0])
    sims = f[np.asarray(queries)] @ f.T
    sims[np.arange(len(sims)), np.asarray(queries)] = -np.inf
    return np.argsort(-sims, axis=1)[:, :n]


@torch.no_grad()
def top_activating(net: DeepClusterNet, images: torch.Tensor, layer: int, filters, n: int = 6,
                   batch_size: int = 256) -> np.ndarray:
    """For each filter of conv ``layer`` (0-based), the ``n`` images of highest mean activation."""
    net.eval()
    dev = net.mean.device
    acts = []
    for s in range(0, len(images), batch_size):
        m = net.conv_outputs(images[s:s + batch_size].to(dev))[layer]
        acts.append(m[:, list(filters)].mean(dim=(2, 3)).float().cpu())
    acts = torch.cat(acts).numpy()  # (n_images, n_filters)
    return np.argsort(-acts, axis=0)[:n].T
