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
    out.update(torch_sequence_steps(torch))
    return out


def torch_sequence_steps(torch):
    """Twins of examples/bench.rs's `seq` section: the same models, batches and optimizer."""
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(torch.get_num_threads())
    vocab, out = 92, {}
    data = torch.randint(0, vocab, (100_000,))

    def windows(batch, context):
        starts = torch.randint(0, data.numel() - context - 1, (batch, 1))
        w = data[starts + torch.arange(context + 1)]
        return w[:, :-1], w[:, 1:]

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

    class CharGru(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.gru, self.head = nn.Embedding(vocab, 64), nn.GRU(64, 64, batch_first=True), nn.Linear(64, vocab)

        def forward(self, ids):
            return self.head(self.gru(self.embed(ids))[0])

    for name, model, batch, context in (("chargpt_step_ms", Gpt(), 32, 64), ("gru_step_ms", CharGru(), 64, 32)):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1 if name.startswith("chargpt") else 0.01)

        def step():
            x, y = windows(batch, context)
            opt.zero_grad()
            loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss.item()

        out[name] = median(step, 7) * 1e3
    return out


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
