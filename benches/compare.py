#!/usr/bin/env python3
"""Run wgrad's benchmark and the same measurements in NumPy (and PyTorch, when installed) in
the same session, and print the ratios. Medians of repeated runs, as in examples/bench.rs.

    python3 benches/compare.py [--device cpu] [--quick]
"""
import json
import subprocess
import sys
import time


def median(f, reps=9, inner=1):
    f()
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(inner):
            f()
        samples.append((time.perf_counter() - t) / inner)
    samples.sort()
    return samples[len(samples) // 2]


def numpy_figures():
    import numpy as np

    out = {}
    rng = np.random.default_rng(0)
    for n in (256, 512, 1024, 2048):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out[f"matmul_f32_{n}"] = 2 * n**3 / median(lambda: a @ b, 5 if n >= 2048 else 10) / 1e9
        if n == 1024:
            out[f"matmul_f32_{n}_transposed_rhs"] = 2 * n**3 / median(lambda: a @ b.T, 5) / 1e9
    n = 16 << 20
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    out["add_f32_16M"] = 12 * n / median(lambda: x + y) / 1e9
    out["add_inplace_f32_16M"] = 12 * n / median(lambda: np.add(x, y, out=x)) / 1e9
    grid = rng.standard_normal((4096, 4096), dtype=np.float32)
    col = rng.standard_normal((4096, 1), dtype=np.float32)
    out["broadcast_add_f32_16M"] = 8 * n / median(lambda: grid + col) / 1e9
    out["sum_f32_16M"] = 4 * n / median(lambda: x.sum()) / 1e9
    out["sum_rows_f32_4096x4096"] = 4 * n / median(lambda: grid.sum(axis=1)) / 1e9
    a = rng.standard_normal(10, dtype=np.float32)
    out["tiny_op"] = median(lambda: a + a, 15, 2000) * 1e6
    return out


ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv[:-1] else None


def wanted(section):
    """Whether `--only` leaves this section in (the same names as examples/bench)."""
    return ONLY is None or ONLY == section


def torch_figures():
    import torch

    torch.manual_seed(0)
    out = {}
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        out[f"matmul_f32_{n}"] = 2 * n**3 / median(lambda: a @ b, 5 if n >= 2048 else 10) / 1e9
        if n == 1024:
            out[f"matmul_f32_{n}_transposed_rhs"] = 2 * n**3 / median(lambda: a @ b.T, 5) / 1e9
    n = 16 << 20
    x, y = torch.randn(n), torch.randn(n)
    out["add_f32_16M"] = 12 * n / median(lambda: x + y) / 1e9
    out["add_inplace_f32_16M"] = 12 * n / median(lambda: x.add_(y)) / 1e9
    out["sum_f32_16M"] = 4 * n / median(lambda: x.sum()) / 1e9
    a = torch.randn(10)
    out["tiny_op"] = median(lambda: a + a, 15, 2000) * 1e6
    w = torch.randn(10, requires_grad=True)

    def step():
        (w * w).sum().backward()
        w.grad = None

    out["tiny_forward_backward"] = median(step, 15, 1000) * 1e6
    if wanted("mlp"):
        out.update(torch_mlp_epoch(torch))
    if wanted("steps"):
        out.update(torch_steps(torch))
    return out


def torch_steps(torch):
    """Twins of examples/bench's `steps` section (examples/bench/steps.rs): the same models,
    batches, optimizers and clipping, one training step each, median ms."""
    import torch.nn as nn
    import torch.nn.functional as F

    out = {}

    def timed(name, model, opt, batch, clip=None):
        def step():
            x, y = batch()
            opt.zero_grad()
            loss = F.cross_entropy(model(x).reshape(y.numel(), -1), y.reshape(-1))
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            loss.item()

        out[name] = median(step, 7) * 1e3

    lenet = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(), nn.Linear(84, 10))
    images = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    timed("lenet_step_ms", lenet, torch.optim.SGD(lenet.parameters(), lr=0.1), lambda: images)

    class Residual(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride)
            self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
            self.project = nn.Conv2d(c_in, c_out, 1, stride=stride) if c_in != c_out or stride != 1 else None

        def forward(self, x):
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(y + (self.project(x) if self.project is not None else x))

    resnet = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        Residual(16, 16, 1), Residual(16, 32, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    images = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    opt = torch.optim.SGD(resnet.parameters(), lr=0.05, momentum=0.9)
    timed("resnet_step_ms", resnet, opt, lambda: images)

    def windows(data, batch, context):
        starts = torch.randint(0, data.numel() - context - 1, (batch, 1))
        w = data[starts + torch.arange(context + 1)]
        return w[:, :-1], w[:, 1:]

    class CharRnn(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.embed, self.rnn, self.head = nn.Embedding(64, 32), cell(32, 128, batch_first=True), nn.Linear(128, 64)

        def forward(self, ids):
            return self.head(self.rnn(self.embed(ids))[0])

    tokens = torch.randint(0, 64, (100_000,))
    for name, cell in (("gru_step_ms", nn.GRU), ("lstm_step_ms", nn.LSTM)):
        model = CharRnn(cell)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        timed(name, model, opt, lambda: windows(tokens, 64, 32), clip=1.0)

    vocab = 92

    class Block(nn.Module):
        def __init__(self, width, heads):
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).chunk(3, -1)
            split = lambda y: y.view(b, t, self.heads, c // self.heads).transpose(1, 2)
            att = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=True)
            x = x + self.proj(att.transpose(1, 2).reshape(b, t, c))
            return x + self.down(F.gelu(self.up(self.ln2(x))))

    class Gpt(nn.Module):
        def __init__(self, width=128, layers=4, heads=4, context=64):
            super().__init__()
            self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(context, width)
            self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
            self.ln_f, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

        def forward(self, ids):
            x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1]))
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln_f(x))

    text = torch.randint(0, vocab, (100_000,))
    gpt = Gpt()
    opt = torch.optim.AdamW(gpt.parameters(), lr=1e-3, weight_decay=0.1)
    timed("chargpt_step_ms", gpt, opt, lambda: windows(text, 32, 64), clip=1.0)
    return out


def torch_mlp_epoch(torch):
    """Twin of the `mlp` section: an epoch of 784-256-10 on 60,000 samples, batch 256, SGD."""
    import torch.nn as nn
    import torch.nn.functional as F

    xs, ys = torch.randn(60_000, 784), torch.randint(0, 10, (60_000,))
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def epoch():
        for start in range(0, 60_000, 256):
            opt.zero_grad()
            F.cross_entropy(model(xs[start:start + 256]), ys[start:start + 256]).backward()
            opt.step()

    return {"mlp_epoch_s": median(epoch, 3)}


def main():
    args = sys.argv[1:]
    cmd = ["cargo", "run", "--release", "--quiet", "--example", "bench", "--", "--json"] + args
    ours = {}
    units = {}
    for line in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines():
        rec = json.loads(line)
        ours[rec["name"]] = rec["value"]
        units[rec["name"]] = rec["unit"]
    baselines = {}
    for name, fn in (("numpy", numpy_figures), ("torch", torch_figures)):
        try:
            baselines[name] = fn()
        except ImportError:
            print(f"({name} not installed: no {name} column)")
    header = f"{'benchmark':<26} {'unit':<8} {'wgrad':>10}" + "".join(f" {b:>10} {'ratio':>7}" for b in baselines)
    print(header)
    print("-" * len(header))
    for name, value in ours.items():
        row = f"{name:<32} {units[name]:<8} {value:>10.2f}"
        for b in baselines.values():
            if name in b:
                # Ratio > 1 means wgrad is better (higher throughput, or lower time for "us").
                ratio = b[name] / value if units[name] in ("us", "ms", "s") else value / b[name]
                row += f" {b[name]:>10.2f} {ratio:>6.2f}x"
            else:
                row += f" {'-':>10} {'':>7}"
        print(row)
    print("ratio: wgrad relative to the baseline, > 1 is better for wgrad")


if __name__ == "__main__":
    main()
