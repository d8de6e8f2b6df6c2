#!/usr/bin/python3
"""Reference values for tests/optim: torch.optim optimizers, clip_grad_norm_, torch.renorm and
torch.optim.lr_scheduler, written as text the Criterion tests read (no torch at test time).

Run from anywhere with Debian's PyTorch (apt-get install python3-torch):
    /usr/bin/python3 tests/data/torch/make_optim_ref.py
It rewrites optim_ref.txt and schedule_ref.txt beside this script.

The problem: N parameters (two tensors: the first DECAY_SPLIT elements form a parameter group
with weight decay, the rest a group with weight_decay=0, which is dptrain's decay mask) and a
fixed sequence of STEPS gradients, drawn once from torch's generator (seed 0) with magnitudes
spread over 1e-3..10. Every case starts from the same parameters, sees the same gradients and
a per-step learning rate lr * LR_FACTORS[k] (all exact in float32), and records the parameters
after each step. Floats are written as C99 hex literals (float.hex), exact for strtod.

NAdam: torch 1.13 multiplies mu_product_next by mu once too often (fixed in PyTorch 2.0,
pytorch/pytorch#92699; the docs' algorithm has it right). dptrain follows the docs, so NAdam
cases come from nadam_v2() below, a transcription of PyTorch 2.x's _single_tensor_nadam; the
script checks that putting the 1.13 bug back into it reproduces torch.optim.NAdam, which
validates the transcription.
"""
import math
import os
import sys

import torch

N = 48
DECAY_SPLIT = 32
STEPS = 6
LR_FACTORS = [1.0, 0.75, 0.5, 1.25, 1.0, 0.625]
HERE = os.path.dirname(os.path.abspath(__file__))


def hexs(t):
    return " ".join(float(x).hex() for x in t.detach().reshape(-1).tolist())


def problem():
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(N, generator=g, dtype=torch.float32)
    grads = []
    for _ in range(STEPS):
        mag = torch.exp(torch.empty(N).uniform_(math.log(1e-3), math.log(10.0), generator=g))
        grads.append((torch.randn(N, generator=g) * mag).to(torch.float32))
    return p0, grads


def nadam_v2(params, state, lr, beta1, beta2, eps, momentum_decay, bug113=False):
    """PyTorch 2.x _single_tensor_nadam (no decoupled decay), one step over params, a list of
    (tensor, weight_decay)."""
    for p, wd in params:
        st = state.setdefault(id(p), {"step": torch.tensor(0.0),
                                       "mu_product": torch.tensor(1.0),
                                       "exp_avg": torch.zeros_like(p),
                                       "exp_avg_sq": torch.zeros_like(p)})
        grad = p.grad
        st["step"] += 1
        step = st["step"].item()
        bias_correction2 = 1 - beta2 ** step
        if wd != 0:
            grad = grad.add(p, alpha=wd)
        mu = beta1 * (1. - 0.5 * (0.96 ** (step * momentum_decay)))
        mu_next = beta1 * (1. - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
        st["mu_product"] *= mu
        if bug113:
            mu_product_next = (st["mu_product"] * mu * mu_next).item()
        else:
            mu_product_next = st["mu_product"].item() * mu_next
        if bug113:
            st["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
        else:
            st["exp_avg"].lerp_(grad, 1 - beta1)
        st["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = st["exp_avg_sq"].div(bias_correction2).sqrt().add_(eps)
        with torch.no_grad():
            p.addcdiv_(grad, denom, value=(-lr * (1. - mu) / (1. - st["mu_product"].item())))
            p.addcdiv_(st["exp_avg"], denom, value=(-lr * mu_next) / (1. - mu_product_next))


# name, kind, base lr, config for dptrain (the torch kwargs follow from it), clip, max-norm
CASES = [
    ("sgd", "sgd", 2**-4, {}),
    ("sgd_momentum", "sgd", 2**-4, {"momentum": 0.9}),
    ("sgd_momentum_dampening_wd", "sgd", 2**-4,
     {"momentum": 0.9, "dampening": 0.25, "weight_decay": 0.01}),
    ("sgd_nesterov_wd", "sgd", 2**-4, {"momentum": 0.9, "nesterov": 1, "weight_decay": 0.01}),
    ("sgd_nesterov_clip", "sgd", 2**-4,
     {"momentum": 0.9, "nesterov": 1, "clip_global_norm": 0.5}),
    ("sgd_momentum_maxnorm", "sgd", 2**-3, {"momentum": 0.9, "max_norm": 1.5}),
    ("adagrad", "adagrad", 2**-4, {}),
    ("adagrad_lr_decay_wd_init", "adagrad", 2**-4,
     {"lr_decay": 0.05, "weight_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("adadelta", "adadelta", 1.0, {}),
    ("adadelta_rho_wd", "adadelta", 0.5, {"rho": 0.8, "eps": 1e-5, "weight_decay": 0.01}),
    ("rmsprop", "rmsprop", 2**-7, {}),
    ("rmsprop_momentum", "rmsprop", 2**-7, {"momentum": 0.9}),
    ("rmsprop_centered", "rmsprop", 2**-7, {"centered": 1}),
    ("rmsprop_centered_momentum_wd", "rmsprop", 2**-7,
     {"centered": 1, "momentum": 0.9, "weight_decay": 0.01, "alpha": 0.9}),
    ("adam", "adam", 2**-7, {}),
    ("adam_l2_wd", "adam", 2**-7, {"weight_decay": 0.01}),
    ("adam_amsgrad", "adam", 2**-7, {"amsgrad": 1, "beta1": 0.8, "beta2": 0.99}),
    ("adam_clip", "adam", 2**-7, {"clip_global_norm": 1.0}),
    ("adamw", "adamw", 2**-7, {"weight_decay": 0.05}),
    ("adamw_amsgrad", "adamw", 2**-7, {"weight_decay": 0.05, "amsgrad": 1}),
    ("nadam", "nadam", 2**-7, {}),
    ("nadam_wd", "nadam", 2**-7, {"weight_decay": 0.01, "momentum_decay": 0.01}),
]

MAXNORM_ROWS = (0, 4, 8)  # offset, rows, cols: the decayed tensor seen as a (4, 8) matrix


def make_opt(kind, groups, lr, c):
    wd = c.get("weight_decay", 0.0)
    pg = [{"params": [groups[0]], "weight_decay": wd},
          {"params": [groups[1]], "weight_decay": 0.0}]
    if kind == "sgd":
        return torch.optim.SGD(pg, lr=lr, momentum=c.get("momentum", 0.0),
                               dampening=c.get("dampening", 0.0),
                               nesterov=bool(c.get("nesterov", 0)), foreach=False)
    if kind == "adagrad":
        return torch.optim.Adagrad(pg, lr=lr, lr_decay=c.get("lr_decay", 0.0),
                                   initial_accumulator_value=c.get(
                                       "initial_accumulator_value", 0.0),
                                   eps=c.get("eps", 1e-10), foreach=False)
    if kind == "adadelta":
        return torch.optim.Adadelta(pg, lr=lr, rho=c.get("rho", 0.9), eps=c.get("eps", 1e-6),
                                    foreach=False)
    if kind == "rmsprop":
        return torch.optim.RMSprop(pg, lr=lr, alpha=c.get("alpha", 0.99),
                                   eps=c.get("eps", 1e-8), momentum=c.get("momentum", 0.0),
                                   centered=bool(c.get("centered", 0)), foreach=False)
    betas = (c.get("beta1", 0.9), c.get("beta2", 0.999))
    if kind == "adam":
        return torch.optim.Adam(pg, lr=lr, betas=betas, eps=c.get("eps", 1e-8),
                                amsgrad=bool(c.get("amsgrad", 0)), foreach=False)
    if kind == "adamw":
        return torch.optim.AdamW(pg, lr=lr, betas=betas, eps=c.get("eps", 1e-8),
                                 amsgrad=bool(c.get("amsgrad", 0)), foreach=False)
    raise ValueError(kind)


def run_case(kind, lr, c, p0, grads, bug113=False):
    pa = p0[:DECAY_SPLIT].clone().requires_grad_(True)
    pb = p0[DECAY_SPLIT:].clone().requires_grad_(True)
    opt = None if kind == "nadam" else make_opt(kind, (pa, pb), lr, c)
    nstate = {}
    out, lrs = [], []
    for k in range(STEPS):
        lr_k = lr * LR_FACTORS[k]
        lrs.append(lr_k)
        pa.grad = grads[k][:DECAY_SPLIT].clone()
        pb.grad = grads[k][DECAY_SPLIT:].clone()
        if c.get("clip_global_norm", 0) > 0:
            torch.nn.utils.clip_grad_norm_([pa, pb], c["clip_global_norm"])
        if kind == "nadam":
            nadam_v2([(pa, c.get("weight_decay", 0.0)), (pb, 0.0)], nstate, lr_k,
                     c.get("beta1", 0.9), c.get("beta2", 0.999), c.get("eps", 1e-8),
                     c.get("momentum_decay", 4e-3), bug113)
        else:
            for grp in opt.param_groups:
                grp["lr"] = lr_k
            opt.step()
        if c.get("max_norm", 0) > 0:
            off, rows, cols = MAXNORM_ROWS
            with torch.no_grad():
                w = pa[off:off + rows * cols].view(rows, cols)
                w.copy_(torch.renorm(w, 2, 0, c["max_norm"]))
        out.append(torch.cat([pa.detach(), pb.detach()]).clone())
    return lrs, out


def check_nadam_transcription(p0, grads):
    """nadam_v2 with the 1.13 bug put back must equal torch.optim.NAdam of this torch."""
    for wd, md in ((0.0, 4e-3), (0.01, 0.01)):
        pa = p0[:DECAY_SPLIT].clone().requires_grad_(True)
        pb = p0[DECAY_SPLIT:].clone().requires_grad_(True)
        opt = torch.optim.NAdam([{"params": [pa], "weight_decay": wd},
                                 {"params": [pb], "weight_decay": 0.0}],
                                lr=2**-7, momentum_decay=md, foreach=False)
        for k in range(STEPS):
            pa.grad = grads[k][:DECAY_SPLIT].clone()
            pb.grad = grads[k][DECAY_SPLIT:].clone()
            for grp in opt.param_groups:
                grp["lr"] = 2**-7 * LR_FACTORS[k]
            opt.step()
        ref = torch.cat([pa.detach(), pb.detach()])
        _, mine = run_case("nadam", 2**-7, {"weight_decay": wd, "momentum_decay": md}, p0, grads,
                           bug113=True)
        err = (mine[-1] - ref).abs().max().item()
        if err > 1e-6:
            sys.exit(f"nadam transcription differs from torch {torch.__version__}: {err}")


def write_optim(path):
    p0, grads = problem()
    if torch.__version__ < "2":
        check_nadam_transcription(p0, grads)
    with open(path, "w") as f:
        f.write(f"# torch {torch.__version__}: tests/data/torch/make_optim_ref.py\n")
        f.write(f"n {N}\ndecay_split {DECAY_SPLIT}\nsteps {STEPS}\n")
        f.write(f"maxnorm_rows {MAXNORM_ROWS[0]} {MAXNORM_ROWS[1]} {MAXNORM_ROWS[2]}\n")
        f.write(f"p0 {hexs(p0)}\n")
        for k in range(STEPS):
            f.write(f"grad {k} {hexs(grads[k])}\n")
        for name, kind, lr, c in CASES:
            lrs, out = run_case(kind, lr, c, p0, grads)
            f.write(f"case {name}\nconfig kind={kind}")
            for key, v in c.items():
                f.write(f" {key}={v!r}")  # numbers only: repr round-trips through strtod
            f.write("\nlr " + " ".join(float(x).hex() for x in lrs) + "\n")
            for k in range(STEPS):
                f.write(f"expect {k} {hexs(out[k])}\n")
            f.write("end\n")
        # torch.renorm alone: rows 0, 2, 4 exceed max_norm 1, the others do not.
        g = torch.Generator().manual_seed(1)
        w = torch.randn(6, 5, generator=g) * torch.tensor([2.0, 0.2, 3.0, 0.1, 1.5, 0.3])[:, None]
        f.write(f"renorm 6 5 {1.0.hex()}\nin {hexs(w)}\nout {hexs(torch.renorm(w, 2, 0, 1.0))}\n")


def sched_case(f, name, conf, steps, make):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=conf["lr"], momentum=0.9)
    sched = make(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    f.write(f"sched {name} " + " ".join(f"{k}={v if isinstance(v, str) else repr(v)}"
                                        for k, v in conf.items()) + "\n")
    f.write("lr " + " ".join(repr(x) for x in lrs) + "\n")


def write_schedules(path):
    S = torch.optim.lr_scheduler
    with open(path, "w") as f:
        f.write(f"# torch {torch.__version__}: tests/data/torch/make_optim_ref.py\n")
        f.write("# lr per optimizer step (step 0 first), as torch's scheduler sets it\n")
        sched_case(f, "StepLR", {"kind": "step", "lr": 0.1, "step_size": 3, "scale": 0.5}, 12,
                   lambda o: S.StepLR(o, step_size=3, gamma=0.5))
        sched_case(f, "MultiStepLR", {"kind": "steps", "lr": 0.1, "steps": "2,5,5,9",
                                      "scales": "0.1,0.1,0.1,0.1"}, 12,
                   lambda o: S.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.1))
        sched_case(f, "ExponentialLR", {"kind": "exp", "lr": 0.1, "gamma": 0.9}, 12,
                   lambda o: S.ExponentialLR(o, gamma=0.9))
        sched_case(f, "PolynomialLR", {"kind": "poly", "lr": 0.1, "power": 2.0, "max_steps": 10},
                   13, lambda o: S.PolynomialLR(o, total_iters=10, power=2.0))
        sched_case(f, "CosineAnnealingLR", {"kind": "cosine", "lr": 0.1, "min_lr": 0.001,
                                            "max_steps": 20}, 20,
                   lambda o: S.CosineAnnealingLR(o, T_max=20, eta_min=0.001))
        sched_case(f, "OneCycleLR", {"kind": "one_cycle", "lr": 0.1, "max_steps": 50}, 50,
                   lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=50, cycle_momentum=False))
        sched_case(f, "OneCycleLR_custom", {"kind": "one_cycle", "lr": 0.4, "max_steps": 37,
                                            "pct_start": 0.25, "div_factor": 10.0,
                                            "final_div_factor": 100.0}, 37,
                   lambda o: S.OneCycleLR(o, max_lr=0.4, total_steps=37, pct_start=0.25,
                                          div_factor=10.0, final_div_factor=100.0,
                                          cycle_momentum=False))
        sched_case(f, "LinearLR_warmup", {"kind": "constant", "lr": 0.1, "warmup_steps": 5}, 10,
                   lambda o: S.LinearLR(o, start_factor=1 / 5, end_factor=1.0, total_iters=4))


if __name__ == "__main__":
    torch.set_num_threads(1)
    write_optim(os.path.join(HERE, "optim_ref.txt"))
    write_schedules(os.path.join(HERE, "schedule_ref.txt"))
