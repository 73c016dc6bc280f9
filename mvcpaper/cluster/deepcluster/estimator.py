"""The DeepCluster estimator: alternate clustering and training, with checkpoints and resume,
on one process or several under torch DDP (:mod:`.distributed`)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..._utils import resolve_device, seeded, tqdm
from ...cache import read_entry, write_entry
from ...metrics import nmi
from .._base import ClusterBase, check_n_clusters
from . import distributed
from .images import crop_resize, load_image_tensor, random_crop_boxes
from .network import DeepClusterNet
from .pseudolabels import (
    kmeans_pseudolabels,
    pca_whiten,
    pic_cluster,
    uniform_label_sampler,
)

__all__ = ["DeepCluster"]


@torch.no_grad()
def _batched(fn, images: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    outs = [fn(images[s:s + batch_size].to(device)).float().cpu() for s in range(0, len(images), batch_size)]
    return torch.cat(outs)


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

    Several processes
    -----------------
    Under ``torchrun`` (a torch.distributed process group, see
    :func:`.distributed.init_from_env` and ``mvcpaper deepcluster``), ``fit`` runs data
    parallel: each process embeds its share of the images (gathered after), rank 0
    clusters and broadcasts the pseudo-labels, and each global batch of ``batch_size``
    images (the same sampling and crops as one process) is split across the processes,
    whose gradients DDP averages; rank 0 alone writes checkpoints and shows progress. On
    GPUs BatchNorm is synchronised over the global batch; on the CPU (gloo) torch has no
    synchronised BatchNorm, so each process normalises over its own share and the dropout
    masks differ: the loss follows one process's within a tolerance, not exactly
    (``tests/test_deepcluster.py``).

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
        """Generators for the epoch's crops/top layer and sampling/clustering, the same on every
        process; dropout draws from torch's global state, seeded per process."""
        seed = int(self.random_state) * 100003 + int(epoch)
        torch.manual_seed(seed + 7919 * distributed.world()[0])  # fit runs inside `seeded`: restored after
        return torch.Generator().manual_seed(seed), np.random.default_rng(seed)

    def features(self, images: torch.Tensor) -> np.ndarray:
        """The network's clustering features (:meth:`DeepClusterNet.embed`) of every image
        (each process embeds its share; see "Several processes")."""
        self.model_.eval()
        dev = self.model_.mean.device
        mine = _batched(self.model_.embed, images[distributed.shard(len(images))], dev, max(self.batch_size, 256))
        return distributed.gather_rows(mine.to(dev), len(images)).cpu().numpy()

    def _cluster(self, feats: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        """Pseudo-labels and the clustering loss: computed by rank 0, the same on every process."""
        dev = self.model_.mean.device
        labels, loss = None, float("nan")
        if distributed.world()[0] == 0:
            Z = pca_whiten(torch.as_tensor(feats, device=dev), self.pca_dim)
            if self.clusterer == "kmeans":
                labels, loss = kmeans_pseudolabels(Z, self.n_clusters, self.kmeans_iter, seed)
            else:
                labels = pic_cluster(Z.cpu().numpy(), n_neighbors=self.pic_neighbors)
        return distributed.broadcast_labels(labels, len(feats), loss, dev)

    def _train_epoch(self, images, labels, gen, rng, bar=None) -> float:
        model, dev = self.model_, self.model_.mean.device
        n_out = int(labels.max()) + 1
        top = model.reset_top_layer(n_out, gen)
        top_opt = torch.optim.SGD(top.parameters(), lr=self.lr, momentum=self.top_momentum,
                                  weight_decay=self.weight_decay, fused=True)
        order = uniform_label_sampler(labels, max(1, int(round(self.reassign * len(labels)))), rng)
        target = torch.as_tensor(labels, dtype=torch.long)
        rank, n_proc = distributed.world()
        net = model if n_proc == 1 else DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
        net.train()
        total = 0.0
        for s in range(0, len(order), self.batch_size):
            batch = order[s:s + self.batch_size]
            boxes = random_crop_boxes(len(batch), gen, scale=tuple(self.crop_scale))
            if len(batch) < n_proc:  # too few to share (at most n_proc - 1 images per epoch)
                continue
            mine = np.array_split(np.arange(len(batch)), n_proc)[rank]
            idx = torch.as_tensor(batch[mine])
            x = crop_resize(images[idx].to(dev).float().div_(255), boxes[mine])
            loss = F.cross_entropy(net(x), target[idx].to(dev))
            self.optimizer_.zero_grad(set_to_none=True)
            top_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_.step()
            top_opt.step()
            total += loss.item() * len(idx)
            if bar is not None:
                bar.update(len(batch))
        return distributed.all_sum(total, dev) / len(order)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self) -> Path | None:
        return Path(self.checkpoint_dir) / "last.pt" if self.checkpoint_dir else None

    def _save(self, epoch: int, last_labels):
        """The state after ``epoch`` epochs: tensors in ``last.pt`` (loaded with ``weights_only``,
        so a planted file cannot run code), the rest as JSON in its sidecar."""
        path = self._checkpoint_path()
        if path is None or distributed.world()[0] != 0:
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
        if distributed.world()[1] > 1 and dev.type == "cuda":
            self.model_ = nn.SyncBatchNorm.convert_sync_batchnorm(self.model_)
        self.initial_state_ = {k: v.detach().cpu().clone() for k, v in self.model_.state_dict().items()
                               if not k.startswith("top_layer.")}
        body = [p for name, p in self.model_.named_parameters() if not name.startswith("top_layer.")]
        self.optimizer_ = torch.optim.SGD(body, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                                          fused=True)  # one kernel per step: 4x faster than the default loop on the CPU
        self.history_ = []
        start, last = self._load()
        bar = tqdm(total=(self.epochs - start) * max(1, int(round(self.reassign * n))), desc=f"DeepCluster {self.arch}",
                   unit="img", leave=False, disable=not self.progress or distributed.world()[0] != 0)
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
