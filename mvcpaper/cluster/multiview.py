"""Multi-view clustering: the paper's DMVC (MVnet inside IDEC or JULE); MVEC is in ``ensemble``.

**MVnet** (Guérin & Boots 2018, Fig. 4): one fully connected branch per view (the
view's features in), the branches' outputs concatenated, then shared layers
("mlpout") down to the embedding the clustering objective acts on. The paper does not
give every width; ours:

- under JULE (``DMVCJULE``): a linear branch ``d_v -> 160`` per view whose output is
  L2-normalised, so that every view weighs the same in the shared layer (the network's
  counterpart of CC's per-view normalisation); shared ``3*160 -> 160``, L2-normalised
  (JULE's single-view network is ``d -> 160``). The paper's MLP branches (ReLU) measured
  level or lower: see ``scripts/dmvc_vs_cc.py`` and the README;
- under IDEC (``DMVCIDEC``): branch ``d_v -> 500`` (ReLU) per view, shared
  ``3*500 -> 500 -> 2000 -> 10`` (IDEC's encoder after its first layer), and one decoder
  per view, ``10 -> 2000 -> 500 -> 500 -> d_v``, whose mean squared errors are averaged.

Both take the views as a list; they start from the same point as the concatenation
baseline (CC) and differ from it only by the network, which is the paper's comparison.

"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UnknownNameError
from ..features import BACKBONES, build_model, get_backbone, global_pool
from ..preprocessing import l2_normalize
from ._base import check_n_clusters
from .idec import IDEC
from .jule import JULE

__all__ = ["MVNet", "DMVCJULE", "DMVCIDEC", "DMVC"]


def _mlp(dims, last_act: bool, act: bool = True) -> nn.Sequential:
    """Linear layers through ``dims``; ReLU between them (and after the last with ``last_act``),
    none at all without ``act``."""
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if act and (last_act or i < len(dims) - 2):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MVNet(nn.Module):
    """One branch per view, concatenated, then shared layers; optional per-view decoders.

    Parameters
    ----------
    in_dims : list of int
        Feature size of each view.
    branch : tuple of int
        Widths of each view's branch.
    branch_act : bool
        ReLU after every branch layer (else the branch is linear).
    branch_norm : bool
        L2-normalise each branch's output before the concatenation.
    shared : tuple of int
        Widths of the shared layers after the concatenation; the last one is the embedding
        (linear).
    decoder : tuple of int or None
        Hidden widths of each view's decoder (embedding -> ... -> d_v), or no decoder.
    normalize : bool
        L2-normalise the embedding (JULE) or not (IDEC).
    heads : list of nn.Module, optional
        Modules applied to each view's input before its branch (DMVC: the trainable tail
        of the CNN extractor); their output must be ``(batch, in_dims[v])``.
    """

    def __init__(self, in_dims, branch=(100,), shared=(100,), decoder=None, normalize: bool = True, heads=None,
                 branch_act: bool = True, branch_norm: bool = False):
        super().__init__()
        self.heads = nn.ModuleList(heads) if heads is not None else None
        self.branches = nn.ModuleList(_mlp([d, *branch], last_act=branch_act, act=branch_act) for d in in_dims)
        self.branch_norm = branch_norm
        width = branch[-1] * len(in_dims) if branch else sum(in_dims)
        self.shared = _mlp([width, *shared], last_act=False)
        self.decoders = (nn.ModuleList(_mlp([shared[-1], *decoder, d], last_act=False) for d in in_dims)
                         if decoder is not None else None)
        self.normalize = normalize

    def encode(self, xs):
        if self.heads is not None:
            xs = [h(x) for h, x in zip(self.heads, xs)]
        hs = [b(x) for b, x in zip(self.branches, xs)]
        if self.branch_norm:
            hs = [F.normalize(h, dim=1) for h in hs]
        z = self.shared(torch.cat(hs, dim=1))
        return F.normalize(z, dim=1) if self.normalize else z

    forward = encode

    def decode(self, z):
        return [d(z) for d in self.decoders]


class DMVCJULE(JULE):
    """DMVC-fix under JULE's objective: MVnet replaces JULE's representation network.

    ``X`` is a list of views (frozen CNN features, L2-normalised rows). The initial clusters
    are found on the concatenation of the L2-normalised views, exactly as CC's; every merge
    after them is made on MVnet's embedding. ``branch``: the widths of each view's branch,
    ``branch_act``: ReLU in the branches, ``branch_norm``: L2-normalise each branch's output;
    ``hidden``: the shared layers between the concatenated branches and the embedding.
    Other parameters: see :class:`~mvcpaper.cluster.jule.JULE`.
    """

    def __init__(self, n_clusters: int = 8, branch=(160,), branch_act: bool = False, branch_norm: bool = True,
                 k_s: int = 20, k_c: int = 5, eta: float = 0.2,
                 lam: float = 1.0, embed_dim: int = 160, hidden=(), epochs_per_period: int = 20,
                 batch_size: int = 200, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-5,
                 lr_decay: float = 1e-4, lr_power: float = 0.75, margin: float = 0.2, pos_weight: float = 1.0,
                 n_neg: int = 20, max_period_updates: int | None = 1000, recluster: bool = True,
                 device: str = "auto", random_state: int = 0, progress: bool = True):
        super().__init__(n_clusters=n_clusters, k_s=k_s, k_c=k_c, eta=eta, lam=lam, embed_dim=embed_dim,
                         hidden=hidden, epochs_per_period=epochs_per_period, batch_size=batch_size, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, lr_decay=lr_decay, lr_power=lr_power,
                         margin=margin, pos_weight=pos_weight, n_neg=n_neg, max_period_updates=max_period_updates,
                         recluster=recluster, device=device, random_state=random_state, progress=progress)
        self.branch = branch
        self.branch_act = branch_act
        self.branch_norm = branch_norm

    def _inputs(self, X):
        return self._multiview(X)

    def _build_network(self, inputs):
        return MVNet([x.shape[1] for x in inputs], branch=tuple(self.branch), shared=(*self.hidden, self.embed_dim),
                     normalize=True, branch_act=self.branch_act, branch_norm=self.branch_norm)


class DMVCIDEC(IDEC):
    """DMVC-fix under IDEC's objective: MVnet encoder, one decoder per view.

    ``X`` is a list of views; each is rescaled on its own (see IDEC's ``scale``) and
    reconstructed by its own decoder. Other parameters: see :class:`~mvcpaper.cluster.idec.IDEC`.
    """

    def _inputs(self, X):
        return self._multiview(X)

    def _build_autoencoder(self, dims):
        first, rest = self.hidden[0], tuple(self.hidden[1:])
        return MVNet(dims, branch=(first,), shared=(*rest, self.embed_dim), decoder=tuple(reversed(self.hidden)),
                     normalize=False)


# --------------------------------------------------------------------------- DMVC (fine-tuned)
def finetune_cut(backbone: str) -> str:
    """The module whose output DMVC caches for ``backbone`` (the input of the fine-tuned tail,
    :attr:`~mvcpaper.features.BackboneSpec.finetune_cut`)."""
    spec = get_backbone(backbone)
    if spec.finetune_cut is None:
        raise UnknownNameError("backbone with a DMVC tail", backbone,
                               [n for n, b in BACKBONES.items() if b.finetune_cut])
    return spec.finetune_cut


class CNNTail(nn.Module):
    """The last layers of a pretrained CNN, from a cached activation map to its pooled feature.

    Batch-norm layers keep their ImageNet statistics (always in eval mode; their affine
    parameters are trained), so small clustering batches cannot corrupt them. The output is
    L2-normalised, like the frozen features DMVC-fix reads.
    """

    def __init__(self, backbone: str, weights="imagenet"):
        super().__init__()
        finetune_cut(backbone)
        model, _ = build_model(backbone, weights)
        self.tail_names = list(get_backbone(backbone).finetune_tail)
        for p in model.parameters():
            p.requires_grad_(False)
        modules = dict(model.named_modules())
        self.tail = nn.ModuleList(modules[n] for n in self.tail_names)
        for p in self.tail.parameters():
            p.requires_grad_(True)
        head = getattr(model, "pre_logits", None)  # VGG's fc6/fc7
        self.pre = head if isinstance(head, nn.Module) and not self.tail_names else None
        if self.pre is not None:
            for p in self.pre.parameters():
                p.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, x):
        for m in self.tail:
            x = m(x)
        if self.pre is not None:
            x = self.pre(x)
        return F.normalize(global_pool(x), dim=1)  # global average pool, as the frozen features


class DMVC(DMVCJULE):
    """DMVC: MVnet under JULE's objective, fine-tuning the last layers of every CNN too.

    ``X`` is a list of activation maps ``(n, C, H, W)``, one per backbone in
    ``backbones``: the output of :func:`finetune_cut`'s module, from
    ``extract_features(dataset, backbone, layer=finetune_cut(backbone), pool=False)``.
    Each map goes through its CNN's pretrained tail (``BackboneSpec.finetune_tail``: e.g.
    EfficientNet's 1x1 ``conv_head`` + BN, ResNet's ``layer4``), then MVnet as in
    DMVC-fix; the tails are trained with the MLP, at ``finetune_lr`` (a tenth of the
    MLP's rate, under the same decay). Caching the map below the tail keeps the CPU cost
    bounded (the early layers never run again, and each epoch runs every tail once per
    image); the paper fine-tuned whole networks on a GPU.
    """

    def __init__(self, n_clusters: int = 8, backbones=(), weights="imagenet", finetune_lr: float = 1e-3,
                 branch=(160,), branch_act: bool = False, branch_norm: bool = True, k_s: int = 20, k_c: int = 5,
                 eta: float = 0.2, lam: float = 1.0,
                 embed_dim: int = 160, hidden=(), epochs_per_period: int = 20, batch_size: int = 200,
                 lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-5, lr_decay: float = 1e-4,
                 lr_power: float = 0.75, margin: float = 0.2, pos_weight: float = 1.0, n_neg: int = 20,
                 max_period_updates: int | None = 1000, recluster: bool = True, device: str = "auto",
                 random_state: int = 0, progress: bool = True):
        super().__init__(n_clusters=n_clusters, branch=branch, branch_act=branch_act, branch_norm=branch_norm,
                         k_s=k_s, k_c=k_c, eta=eta, lam=lam, embed_dim=embed_dim, hidden=hidden,
                         epochs_per_period=epochs_per_period,
                         batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         lr_decay=lr_decay, lr_power=lr_power, margin=margin, pos_weight=pos_weight, n_neg=n_neg,
                         max_period_updates=max_period_updates, recluster=recluster, device=device,
                         random_state=random_state, progress=progress)
        self.backbones = backbones
        self.weights = weights
        self.finetune_lr = finetune_lr

    def _inputs(self, X):
        if not isinstance(X, (list, tuple)) or len(X) != len(self.backbones) or len(X) < 2:
            raise ValueError(f"DMVC needs one activation map per backbone ({list(self.backbones)}); got "
                             f"{len(X) if isinstance(X, (list, tuple)) else 'one array'}")
        maps = []
        for b, m in zip(self.backbones, X):
            m = np.asarray(m, dtype=np.float32)
            if m.ndim != 4:
                raise ValueError(f"the input for {b} must be a (n, C, H, W) map from extract_features(..., "
                                 f"layer={finetune_cut(b)!r}, pool=False); got shape {m.shape}")
            if not np.isfinite(m).all():
                raise ValueError(f"the map for {b} has NaN or infinite values")
            maps.append(m)
        if len({m.shape[0] for m in maps}) > 1:
            raise ValueError(f"all maps must have the same number of rows; got {[m.shape[0] for m in maps]}")
        check_n_clusters(self.n_clusters, maps[0].shape[0])
        return maps

    @torch.no_grad()
    def _initial_representation(self, inputs):
        self.tails_ = [CNNTail(b, self.weights) for b in self.backbones]  # fresh pretrained tails, inputs checked
        feats = []
        for tail, m in zip(self.tails_, inputs):
            tail.eval()
            feats.append(torch.cat([tail(torch.as_tensor(m[s:s + 256])) for s in range(0, len(m), 256)]).numpy())
        self.frozen_features_ = feats
        return l2_normalize(np.concatenate(feats, axis=1))

    def _build_network(self, inputs):
        dims = [f.shape[1] for f in self.frozen_features_]
        return MVNet(dims, branch=tuple(self.branch), shared=(*self.hidden, self.embed_dim), normalize=True,
                     heads=self.tails_, branch_act=self.branch_act, branch_norm=self.branch_norm)

    def _param_groups(self):
        tail_params = [p for p in self.net_.heads.parameters() if p.requires_grad]
        ids = {id(p) for p in tail_params}
        rest = [p for p in self.net_.parameters() if id(p) not in ids and p.requires_grad]
        return [{"params": rest}, {"params": tail_params, "lr_scale": self.finetune_lr / self.lr}]
