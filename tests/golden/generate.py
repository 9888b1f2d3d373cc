#!/usr/bin/env python3
"""Write wgrad's own PyTorch reference cases (tests/data/wgrad_ops.json).

The cases follow the golden format of ../shared/golden (README.md and README_v2.md): each op
runs in float64 on float32-representable inputs, with the upstream gradient, the gradients
(d sum(output * g) / d input), a tangent per input and the forward-mode derivative (jvp).
Seeded, so a rerun writes the same file. CI does not need PyTorch: the file is committed.

    python3 -m venv venv && venv/bin/pip install torch numpy
    venv/bin/python tests/golden/generate.py            # rewrites tests/data/wgrad_ops.json

A new op's reference values come from adding it to CASES below and rerunning.

Conventions beyond the shared format:
- `attrs.scalar` (with `attrs.scalar_side`, "rhs" or "lhs") makes one operand a Python number:
  `{"scalar": 2.5, "scalar_side": "lhs"}` on op `sub` is `2.5 - x`. A JSON integer is a Python
  int, a float a Python float, a bool a Python bool: PyTorch's "wrapped number" promotion.
"""
import json
import math
import operator
import os
import sys

import torch

SEED = 20261201
torch.manual_seed(SEED)
OUT = os.path.join(os.path.dirname(__file__), "..", "data", "wgrad_ops.json")


def f32(values):
    """float32-representable float64 values."""
    return torch.tensor(values, dtype=torch.float32).to(torch.float64)


def randn(*shape):
    return torch.randn(tuple(shape), dtype=torch.float32).to(torch.float64)


def encode(t):
    if t.dtype == torch.bool:
        dtype, data = "bool", [bool(v) for v in t.flatten().tolist()]
    elif t.dtype in (torch.int64, torch.int32):
        dtype, data = "i64", [int(v) for v in t.flatten().tolist()]
    else:
        dtype = "f32"
        data = [None if math.isnan(v) else v for v in t.flatten().tolist()]
    return {"shape": list(t.shape), "dtype": dtype, "data": data}


def apply(op, attrs, xs):
    """The PyTorch meaning of a case (attrs.scalar: one operand is a Python number)."""
    fn = getattr(torch, op, None)
    if "scalar" in attrs:
        # Python's operators where PyTorch's functions take no number on the left.
        fn = {"div": operator.truediv, "add": operator.add, "sub": operator.sub,
              "mul": operator.mul, "pow": operator.pow, "gt": operator.gt,
              "eq": operator.eq}.get(op, fn)
        s = attrs["scalar"]
        return fn(s, xs[0]) if attrs.get("scalar_side") == "lhs" else fn(xs[0], s)
    a = attrs
    if op in ("sum", "mean", "prod", "amax", "amin", "logsumexp", "argmin", "argmax") and "dim" in a:
        return fn(xs[0], a["dim"], keepdim=a.get("keepdim", False))
    if op in ("cumsum", "softmax", "log_softmax"):
        return fn(xs[0], a["dim"])
    if op in ("cat", "stack"):
        return fn(list(xs), a["dim"])
    if op in ("index_select", "gather"):
        return fn(xs[0], a["dim"], xs[1])
    views = {
        "reshape": lambda x: x.reshape(a["shape"]),
        "permute": lambda x: x.permute(a["dims"]),
        "expand": lambda x: x.expand(a["shape"]),
        "select": lambda x: x.select(a["dim"], a["index"]),
        "slice": lambda x: x[tuple(slice(*r) for r in a["ranges"])],
        "t": lambda x: x.t(),
        "norm": lambda x: x.norm(),
    }
    if op in views:
        return views[op](xs[0])
    if op == "gelu_derivative":
        # wgrad's table op for GELU's backward pass: d gelu / dx, PyTorch's gelu_backward
        # with an upstream gradient of ones.
        return torch.ops.aten.gelu_backward(torch.ones_like(xs[0]), xs[0])
    return fn(*xs)


def case(name, op, inputs, attrs=None):
    attrs = attrs or {}
    float_inputs = [x.is_floating_point() for x in inputs]
    xs = [x.clone().requires_grad_(f) for x, f in zip(inputs, float_inputs)]
    out = apply(op, attrs, xs)
    c = {"name": name, "op": op, "attrs": attrs, "inputs": [encode(x.detach()) for x in xs],
         "output": encode(out.detach())}
    if out.is_floating_point() and any(float_inputs):
        g = randn(*out.shape)
        wrt = [x for x, f in zip(xs, float_inputs) if f]
        grads = [d if d is not None else torch.zeros_like(x)
                 for d, x in zip(torch.autograd.grad(out, wrt, g, allow_unused=True), wrt)]
        it = iter(grads)
        c["grad_output"] = encode(g)
        c["grads"] = [encode(next(it)) if f else None for f in float_inputs]
        tangents = [randn(*x.shape) if f else None for x, f in zip(inputs, float_inputs)]
        primals = tuple(x for x, f in zip(inputs, float_inputs) if f)

        def fwd(*ps):
            it = iter(ps)
            return apply(op, attrs, [next(it) if f else x for x, f in zip(inputs, float_inputs)])

        _, jvp = torch.func.jvp(fwd, primals, tuple(t for t in tangents if t is not None))
        c["tangents"] = [encode(t) if t is not None else None for t in tangents]
        c["jvp"] = encode(jvp)
        # The generator's own check: <g, J t> == sum_i <grad_i, t_i>.
        lhs = float((g * jvp).sum())
        rhs = sum(float((d * t).sum()) for d, t in zip(grads, [t for t in tangents if t is not None]))
        assert abs(lhs - rhs) <= 1e-9 * max(1.0, abs(lhs)), (name, lhs, rhs)
    return c


def ints(*values):
    return torch.tensor(values, dtype=torch.int64)


def bools(*values):
    return torch.tensor(values, dtype=torch.bool)


# Values where naive forms lose precision or where the edges of a rule lie.
NEAR_ZERO = f32([1e-8, -1e-7, 3e-6, -2e-5, 1e-4, -0.01, 0.2, -0.3, 0.9, 2.0, 10.0, -0.75])
MIXED = f32([-2.5, -1.0, -0.5, 0.0, 0.5, 1.5, 2.5, 3.7])


def cases():
    yield case("log1p/near_zero", "log1p", [NEAR_ZERO])
    yield case("log1p/(3, 4)", "log1p", [randn(3, 4).abs()])
    yield case("log1p/i64", "log1p", [ints(0, 1, 2, 7)])
    yield case("expm1/near_zero", "expm1", [NEAR_ZERO])
    yield case("expm1/(3, 4)", "expm1", [randn(3, 4)])
    yield case("expm1/bool", "expm1", [bools(True, False)])
    for op in ("sign", "floor", "ceil", "round"):
        yield case(f"{op}/f32", op, [MIXED])
        yield case(f"{op}/i64", op, [ints(-3, 0, 4)])
    yield case("abs/i64", "abs", [ints(-3, 0, 4)])
    yield case("neg/i64", "neg", [ints(-3, 0, 4)])
    yield case("logical_not/f32", "logical_not", [MIXED])
    yield case("logical_not/bool", "logical_not", [bools(True, False, True)])
    yield case("isnan/f32", "isnan", [f32([1.0, float("nan"), -2.0])])
    yield case("isnan/i64", "isnan", [ints(1, 2)])
    for op in ("logical_and", "logical_or", "logical_xor"):
        yield case(f"{op}/f32", op, [MIXED, f32([0.0, 1.0, 0.0, 2.0, 0.0, -1.0, 0.5, 0.0])])
        yield case(f"{op}/bool", op, [bools(True, True, False, False), bools(True, False, True, False)])
    for op in ("clamp_min", "clamp_max"):
        yield case(f"{op}/(3, 4)x(4,)", op, [randn(3, 4), randn(4)])
        yield case(f"{op}/scalar", op, [randn(2, 3)], {"scalar": 0.25, "scalar_side": "rhs"})
        yield case(f"{op}/i64_scalar", op, [ints(-3, 0, 4, 9)], {"scalar": 2, "scalar_side": "rhs"})
    # Numbers as operands: PyTorch's wrapped-number promotion.
    yield case("mul/f32*2.0", "mul", [randn(2, 3)], {"scalar": 2.0, "scalar_side": "rhs"})
    yield case("sub/2.5-x", "sub", [randn(2, 3)], {"scalar": 2.5, "scalar_side": "lhs"})
    yield case("div/3/x", "div", [randn(4).abs() + 0.5], {"scalar": 3, "scalar_side": "lhs"})
    yield case("pow/x**3", "pow", [randn(5)], {"scalar": 3, "scalar_side": "rhs"})
    yield case("pow/2**x", "pow", [randn(5)], {"scalar": 2.0, "scalar_side": "lhs"})
    yield case("mul/i64*2", "mul", [ints(1, -2, 3)], {"scalar": 2, "scalar_side": "rhs"})
    yield case("mul/i64*2.5", "mul", [ints(1, -2, 3)], {"scalar": 2.5, "scalar_side": "rhs"})
    yield case("add/bool+1", "add", [bools(True, False)], {"scalar": 1, "scalar_side": "rhs"})
    yield case("div/i64/2", "div", [ints(1, -3, 4)], {"scalar": 2, "scalar_side": "rhs"})
    yield case("add/i64+i64", "add", [ints(1, -2, 3), ints(10, 20, 30)])
    yield case("add/bool+bool", "add", [bools(True, False, False), bools(True, True, False)])
    yield case("mul/bool*bool", "mul", [bools(True, False, True), bools(True, True, False)])
    yield case("div/i64/i64", "div", [ints(7, -7, 6), ints(2, 2, -4)])
    yield case("pow/i64**i64", "pow", [ints(2, -3, 5), ints(3, 3, 0)])
    yield case("gt/x>0.5", "gt", [randn(5)], {"scalar": 0.5, "scalar_side": "rhs"})
    yield case("eq/i64==2", "eq", [ints(1, 2, 3)], {"scalar": 2, "scalar_side": "rhs"})
    yield case("prod/(3, 4)", "prod", [randn(3, 4)])
    yield case("prod/(3, 4)/dim=1", "prod", [randn(3, 4)], {"dim": 1, "keepdim": False})
    yield case("argmin/(3, 4)/dim=0", "argmin", [randn(3, 4)], {"dim": 0, "keepdim": False})
    yield case("sum/bool", "sum", [bools(True, False, True, True)])
    # The other primitives with their forward-mode derivatives (the shared v1 file has none).
    x34 = randn(3, 4)
    yield case("jvp/sum/dim[1]/kd", "sum", [x34], {"dim": [1], "keepdim": True})
    yield case("jvp/mean/all", "mean", [x34])
    yield case("jvp/amax/dim[0]", "amax", [x34], {"dim": [0], "keepdim": False})
    yield case("jvp/amin/dim[1]/kd", "amin", [x34], {"dim": [1], "keepdim": True})
    yield case("jvp/prod/dim0", "prod", [randn(3, 4)], {"dim": 0, "keepdim": False})
    yield case("jvp/cumsum/dim1", "cumsum", [x34], {"dim": 1})
    yield case("jvp/softmax/dim-1", "softmax", [x34], {"dim": -1})
    yield case("jvp/log_softmax/dim0", "log_softmax", [x34], {"dim": 0})
    yield case("jvp/logsumexp/dim[1]", "logsumexp", [x34], {"dim": [1], "keepdim": False})
    yield case("jvp/norm", "norm", [x34])
    yield case("jvp/matmul/(3, 4)x(4, 2)", "matmul", [x34, randn(4, 2)])
    yield case("jvp/matmul/(2, 3, 4)x(4, 2)", "matmul", [randn(2, 3, 4), randn(4, 2)])
    yield case("jvp/matmul/(3, 4)x(2, 4, 5)", "matmul", [x34, randn(2, 4, 5)])
    yield case("jvp/mv", "mv", [x34, randn(4)])
    yield case("jvp/dot", "dot", [randn(5), randn(5)])
    yield case("jvp/where", "where", [randn(3, 4) > 0, x34, randn(4)])
    yield case("jvp/index_select", "index_select", [x34, ints(2, 0, 2)], {"dim": 0})
    yield case("jvp/gather", "gather", [x34, ints(0, 2, 1, 0, 1, 1).reshape(3, 2)], {"dim": 1})
    yield case("jvp/cat/dim1", "cat", [x34, randn(3, 2)], {"dim": 1})
    yield case("jvp/stack/dim0", "stack", [x34, randn(3, 4)], {"dim": 0})
    yield case("jvp/reshape", "reshape", [x34], {"shape": [2, 6]})
    yield case("jvp/permute", "permute", [randn(2, 3, 4)], {"dims": [2, 0, 1]})
    yield case("jvp/t", "t", [x34])
    yield case("jvp/expand", "expand", [randn(3, 1)], {"shape": [3, 4]})
    yield case("jvp/select", "select", [x34], {"dim": 1, "index": -1})
    yield case("jvp/slice/step", "slice", [randn(5, 4)], {"ranges": [[1, 5, 2], [0, 3, 1]]})
    yield case("gelu_derivative/mixed", "gelu_derivative", [MIXED])
    yield case("gelu_derivative/(3, 4)", "gelu_derivative", [randn(3, 4) * 2])


def main():
    all_cases = list(cases())
    names = [c["name"] for c in all_cases]
    assert len(names) == len(set(names)), "case names must be unique"
    doc = {"generator": f"tests/golden/generate.py, torch {torch.__version__}, float64 reference, seed {SEED}",
           "cases": all_cases}
    with open(OUT, "w") as f:
        json.dump(doc, f, allow_nan=False)
        f.write("\n")
    print(f"{OUT}: {len(all_cases)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
