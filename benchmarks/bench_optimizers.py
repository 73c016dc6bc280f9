"""Fused optimizer steps against PyTorch's default ones, on the networks the methods train.

For each network (IDEC's autoencoder on one 1280-d view and on the 3840-d concatenation,
its Adam; DeepCluster's AlexNet at notebook 06's 64 px with 1000 outputs, its SGD with
momentum and weight decay; JULE's 1280 -> 160 embedding, its SGD), one mini-batch's
forward and backward (for scale) and the optimizer step with ``fused=True`` (what the
package uses) and with PyTorch's default (a loop of element-wise passes per tensor),
same gradients, the median of ``--repeats`` steps each. The forward and backward pass's
rate (its FLOPs counted by ``torch.utils.flop_counter``) is set against a 4096 x 4096
float32 matrix product's, this CPU's practical ceiling: a network at that ceiling is
bound by its arithmetic, and only less arithmetic makes it faster. Synthetic inputs: only
shapes matter. One process, nothing else running.

Usage: python benchmarks/bench_optimizers.py [--repeats 30]
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from mvcpaper._utils import cpu_label
from mvcpaper.cluster.deepcluster import DeepClusterNet
from mvcpaper.cluster.idec import MLPAutoencoder


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def gemm_flops_per_second(repeats: int, n: int = 4096) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / median_seconds(lambda: a @ b, repeats)


def networks():
    """name -> (model, loss of one batch, optimizer class, its settings)."""
    for d in (1280, 3840):
        ae, x = MLPAutoencoder([d, 500, 500, 2000, 10]), torch.randn(256, d)
        yield f"IDEC autoencoder, {d}-d input, batch 256", ae, lambda m=ae, x=x: F.mse_loss(m(x)[1], x), \
            torch.optim.Adam, {"lr": 1e-3}
    net, img = DeepClusterNet("alexnet", 64, True, 4096, 1000), torch.randn(256, 3, 64, 64)
    target = torch.randint(0, 1000, (256,))
    yield "DeepCluster AlexNet, 64 px, batch 256", net, lambda: F.cross_entropy(net(img), target), \
        torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-5}
    emb, x = nn.Linear(1280, 160), torch.randn(200, 1280)
    yield "JULE embedding, 1280-d input, batch 200", emb, lambda: F.normalize(emb(x), dim=1).sum(), \
        torch.optim.SGD, {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-5}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    torch.manual_seed(0)
    gemm = gemm_flops_per_second(a.repeats)
    print(f"# optimizer steps, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores ({cpu_label()}); a 4096 x 4096 float32 matrix product: {gemm / 1e9:.0f} GFLOP/s\n")
    print("| network | parameters | forward + backward ms | its GFLOP/s | of the product's | default step ms "
          "| fused step ms | step speed-up | update speed-up |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, model, loss_fn, opt_cls, settings in networks():
        def backward(model=model, loss_fn=loss_fn):
            model.zero_grad(set_to_none=True)
            loss_fn().backward()
        backward_s = median_seconds(backward, a.repeats)
        with FlopCounterMode(display=False) as counter:
            backward()
        rate = counter.get_total_flops() / backward_s
        steps = {}
        for fused in (False, True):
            opt = opt_cls(model.parameters(), fused=fused, **settings)
            steps[fused] = median_seconds(opt.step, a.repeats)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {n_params / 1e6:.1f} M | {backward_s * 1e3:.1f} | {rate / 1e9:.0f} | {rate / gemm:.0%} "
              f"| {steps[False] * 1e3:.2f} "
              f"| {steps[True] * 1e3:.2f} | {steps[False] / steps[True]:.1f}x "
              f"| {(backward_s + steps[False]) / (backward_s + steps[True]):.2f}x |")


if __name__ == "__main__":
    main()
