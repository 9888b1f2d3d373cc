#!/usr/bin/env python3
"""PyTorch's twin of examples/mnist.rs: the same CNN, data, split sizes, optimizer and
epochs, one run per seed; prints each seed's held-out accuracy.

    python3 benches/mnist_torch.py [seeds...]      (needs torch and numpy)
"""
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "mnist_5k.csv.gz")


def run(rows, seed):
    torch.manual_seed(seed)
    x = torch.tensor(rows[:, :784] / 255.0).reshape(-1, 1, 28, 28)
    y = torch.tensor(rows[:, 784]).long()
    order = torch.randperm(len(y))
    x, y = x[order], y[order]
    (xtr, ytr), (xte, yte) = (x[:4000], y[:4000]), (x[4000:], y[4000:])
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
    )
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(15):
        perm = torch.randperm(4000)
        for i in range(0, 4000, 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        return (model(xte).argmax(1) == yte).float().mean().item()


def main():
    rows = np.loadtxt(gzip.open(DATA), delimiter=",", dtype=np.float32)
    for seed in [int(s) for s in sys.argv[1:]] or range(5):
        print(f"seed {seed}: held-out accuracy {100 * run(rows, seed):.1f}%", flush=True)


if __name__ == "__main__":
    main()
