"""Writes tests/data/torch_half.safetensors with PyTorch: the same values as float32, float16
and bfloat16, each 16-bit tensor rounded by PyTorch itself. tests/half_precision.rs reads it.

    pip install torch safetensors && python tests/golden/half_safetensors.py
"""

import torch
from safetensors.torch import save_file

torch.manual_seed(20261207)
x = torch.randn(3, 4) * 3
# Values whose rounding is a tie, a subnormal of f16, and the edge of f16's range.
x[0, 0] = 1 + 2**-11
x[0, 1] = 1 + 3 * 2**-11
x[0, 2] = 1 + 2**-8
x[0, 3] = 1e-5
x[1, 0] = 65519.0
save_file(
    {"x_f32": x, "x_f16": x.to(torch.float16), "x_bf16": x.to(torch.bfloat16)},
    "tests/data/torch_half.safetensors",
)
print(x.to(torch.float16), x.to(torch.bfloat16), sep="\n")
