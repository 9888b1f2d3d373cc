#!/usr/bin/env python3
"""Write PyTorch modules' checkpoints and their outputs for tests/torch_modules.rs: for each
module, `<name>.safetensors` holds its state_dict exactly as `save_file(m.state_dict())`
writes it, and `<name>_io.safetensors` an input and PyTorch's output (in eval mode, no
dropout). wgrad loads the first strictly and must give the second.

    python3 tests/golden/torch_modules.py      (needs torch and safetensors)
"""
import os

import torch
import torch.nn as nn
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "torch_modules")


def write(name, module, inputs, outputs):
    module.eval()
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, os.path.join(OUT, f"{name}.safetensors"))
    io = {k: v.detach().contiguous() for k, v in {**inputs, **outputs}.items()}
    save_file(io, os.path.join(OUT, f"{name}_io.safetensors"))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    with torch.no_grad():
        m = nn.GRU(8, 6, num_layers=2, batch_first=True, bidirectional=True)
        x, h0 = torch.randn(3, 5, 8), torch.randn(4, 3, 6)
        y, h = m(x, h0)
        write("gru", m, {"input": x, "h0": h0}, {"output": y, "h_n": h})

        m = nn.LSTM(8, 6, num_layers=2)
        x = torch.randn(5, 3, 8)
        y, (h, c) = m(x)
        write("lstm", m, {"input": x}, {"output": y, "h_n": h, "c_n": c})

        m = nn.RNN(8, 6, nonlinearity="relu", batch_first=True)
        x = torch.randn(3, 4, 8)
        y, h = m(x)
        write("rnn_relu", m, {"input": x}, {"output": y, "h_n": h})

        m = nn.MultiheadAttention(8, 2, batch_first=True)
        x = torch.randn(2, 5, 8)
        pad = torch.tensor([[False, False, False, True, True], [False] * 5])
        y, _ = m(x, x, x, key_padding_mask=pad, need_weights=False)
        write("mha", m, {"input": x, "key_padding_mask": pad}, {"output": y})

        m = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        m.eval()
        x = torch.randn(2, 5, 8)
        write("encoder", m, {"input": x}, {"output": m(x)})

        m = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        m.eval()
        tgt, memory = torch.randn(2, 4, 8), torch.randn(2, 6, 8)
        causal = nn.Transformer.generate_square_subsequent_mask(4)
        y = m(tgt, memory, tgt_mask=causal, tgt_is_causal=True)
        write("decoder", m, {"input": tgt, "memory": memory}, {"output": y})

        m = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2)
        x = torch.randn(2, 4, 9)
        write("conv1d", m, {"input": x}, {"output": m(x)})

        m = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
        x = torch.randn(1, 4, 3, 3)
        write("conv_transpose2d", m, {"input": x}, {"output": m(x)})

        m = nn.GroupNorm(2, 4)
        nn.init.normal_(m.weight)
        nn.init.normal_(m.bias)
        x = torch.randn(2, 4, 3, 3)
        write("group_norm", m, {"input": x}, {"output": m(x)})


if __name__ == "__main__":
    main()
