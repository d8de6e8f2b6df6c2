#!/usr/bin/python3
"""Reference data for a whole-network test of fmnist-resnet20: one training step of PyTorch's
ResNet-20 from ../shared/bench/nets.py (the baselines' definition), written as one raw
little-endian binary (resnet20_ref.bin) and a text manifest (resnet20_ref.txt) a C test reads.

Run with Debian's PyTorch (apt-get install python3-torch):
    /usr/bin/python3 tests/data/torch/make_resnet20_ref.py [--bench DIR]
DIR holds nets.py; the default is ../shared/bench beside the repository.

What it does: torch.manual_seed(0), build fmnist-resnet20 (PyTorch default init), train mode;
input x ~ N(0, 1) of shape (4, 1, 28, 28) and labels uniform in [0, 10) from a generator seeded
1; logits = model(x); loss = mean cross-entropy; loss.backward(); one step of
torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4) over ALL parameters
(conv weights, BN weights and biases, the linear weight and bias: BASELINES.md's recipe, as
train_fmnist.py builds it). The momentum buffer starts as the first gradient, so
param_sgd = p - 0.1 * (d + 0.9 d) with d = grad + 5e-4 p.

Order of the parameters (dptrain's cfg order): stem conv, stem bn; per BasicBlock in order
conv1, bn1, conv2, bn2 and, for the projection blocks (first of stages 2 and 3), the shortcut
conv then the shortcut bn; then the linear weight (10, 64) and bias (10). A conv is its weight
(K, C, R, S); a bn is its weight (scale) then its bias.

Manifest: lines "<kind> <name> <dtype> <shape> <offset_bytes> <count>" with kind one of input,
labels, logits, loss, param, bn_mean_before, bn_var_before, bn_mean_after, bn_var_after, grad,
param_sgd; dtype f32 or i32 (little-endian); shape comma-separated ("16,1,3,3", "1" for a
scalar). Kinds param, grad and param_sgd list the tensors in the order above, each kind one
contiguous run of the file. BN running variance is PyTorch's (unbiased batch variance, momentum
0.1); "before" is the fresh state (mean 0, var 1).
"""
import argparse
import os
import struct
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def ordered_modules(model):
    """(name, module) of every conv and bn in dptrain's cfg order, then the linear layer."""
    out = [("conv", model.conv), ("bn", model.bn)]
    for i, blk in enumerate(model.layers):
        p = f"layers.{i}."
        out += [(p + "conv1", blk.conv1), (p + "bn1", blk.bn1),
                (p + "conv2", blk.conv2), (p + "bn2", blk.bn2)]
        if blk.short is not None:
            out += [(p + "short.0", blk.short[0]), (p + "short.1", blk.short[1])]
    out.append(("fc", model.fc))
    return out


def ordered_params(model):
    params = []
    for name, m in ordered_modules(model):
        params.append((name + ".weight", m.weight))
        if m.bias is not None:
            params.append((name + ".bias", m.bias))
    named = dict(model.named_parameters())
    assert len(params) == len(named) and all(named[n] is p for n, p in params), \
        "the cfg order must cover every parameter exactly once"
    return params


class Writer:
    def __init__(self):
        self.blob = bytearray()
        self.lines = []

    def add(self, kind, name, t, dtype="f32"):
        t = t.detach().contiguous()
        if dtype == "f32":
            data = t.to(torch.float32).reshape(-1).tolist()
            raw = struct.pack(f"<{len(data)}f", *data)
        else:
            data = t.to(torch.int64).reshape(-1).tolist()
            raw = struct.pack(f"<{len(data)}i", *data)
        shape = ",".join(str(d) for d in t.shape) or "1"
        self.lines.append(f"{kind} {name} {dtype} {shape} {len(self.blob)} {len(data)}")
        self.blob += raw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=os.path.join(REPO, "..", "shared", "bench"))
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.bench))
    from nets import NETS  # noqa: E402

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ctor, shape = NETS["fmnist-resnet20"]
    model = ctor()
    model.train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, *shape, generator=g)
    y = torch.randint(0, 10, (4,), generator=g)

    bns = [(n, m) for n, m in ordered_modules(model) if isinstance(m, torch.nn.BatchNorm2d)]
    params = ordered_params(model)
    w = Writer()
    w.add("input", "x", x)
    w.add("labels", "y", y, "i32")
    for n, p in params:
        w.add("param", n, p)
    for n, m in bns:
        w.add("bn_mean_before", n + ".running_mean", m.running_mean)
        w.add("bn_var_before", n + ".running_var", m.running_var)

    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    w.add("logits", "logits", logits)
    w.add("loss", "loss", loss.reshape(1))
    for n, m in bns:
        w.add("bn_mean_after", n + ".running_mean", m.running_mean)
        w.add("bn_var_after", n + ".running_var", m.running_var)
    for n, p in params:
        w.add("grad", n, p.grad)

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4, foreach=False)
    opt.step()
    for n, p in params:
        w.add("param_sgd", n, p)

    n_params = sum(p.numel() for _, p in params)
    with open(os.path.join(HERE, "resnet20_ref.bin"), "wb") as f:
        f.write(w.blob)
    with open(os.path.join(HERE, "resnet20_ref.txt"), "w") as f:
        f.write(f"# fmnist-resnet20, one SGD step; torch {torch.__version__}; "
                f"tests/data/torch/make_resnet20_ref.py (its docstring describes every field)\n")
        f.write("# seed 0 (init), 1 (input, labels); batch 4; train mode; SGD lr 0.1 momentum "
                "0.9 nesterov, weight_decay 5e-4 on ALL parameters\n")
        f.write(f"# {n_params} parameters in {len(params)} tensors; {len(bns)} batch norms; "
                f"loss {loss.item():.9g}; {len(w.blob)} bytes\n")
        f.write("# kind name dtype shape offset_bytes count\n")
        f.write("\n".join(w.lines) + "\n")


if __name__ == "__main__":
    main()
