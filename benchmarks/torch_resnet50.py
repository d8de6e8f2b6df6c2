#!/usr/bin/env python3
"""PyTorch's ResNet-50 training throughput on one GPU: the reference for dptrain's
`configs/resnet50.cfg --bench` (benchmarks/gpu_resnet50.sh runs both back to back).

torchvision's resnet50, synthetic 224x224 images already on the device (no input pipeline, as
dptrain's --bench), channels_last, torch.autocast bf16 (or fp16 with a GradScaler, or fp32),
SGD with momentum, cudnn.benchmark on. W warm-up steps, then M timed steps between two
torch.cuda.synchronize() calls. Prints the GPU, the versions, and

    RESULT torch_train_img_per_s=X

Exits 0 with a `SKIP: ...` line where torch, torchvision or a CUDA device is missing, so a
machine without a GPU can run it. Eager mode by default (the usual AMP recipe); --compile adds
torch.compile for a second, stronger figure.
"""
import argparse
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=256, help="images per step (default 256)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (default 20)")
    p.add_argument("--steps", type=int, default=100, help="timed steps (default 100)")
    p.add_argument("--size", type=int, default=224, help="image height and width (default 224)")
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default="bf16",
                   help="autocast type (default bf16); fp32 allows TF32 like PyTorch's default")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.batch < 1 or a.warmup < 0 or a.steps < 1 or a.size < 32:
        p.error("batch >= 1, warmup >= 0, steps >= 1 and size >= 32 are needed")
    return a


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(0)


def main():
    args = parse_args()
    try:
        import torch
    except ImportError as e:
        skip(f"no torch in {sys.executable}: {e}")
    try:
        import torchvision
    except ImportError as e:
        skip(f"no torchvision in {sys.executable}: {e}")
    if not torch.cuda.is_available():
        skip(f"torch {torch.__version__} sees no CUDA device")

    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True  # algorithm chosen per shape, as dptrain's cudnnFind
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dev = torch.device("cuda")

    model = torchvision.models.resnet50(num_classes=1000)
    model = model.to(dev, memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    step_model = torch.compile(model) if args.compile else model

    # One batch on the device, reused every step: the figure is the model's, not a loader's.
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device=dev)

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.precision]
    scaler = torch.amp.GradScaler("cuda") if args.precision == "fp16" else None

    def step():
        opt.zero_grad(set_to_none=True)
        if amp_dtype is not None:
            with torch.autocast(device_type="cuda", dtype=amp_dtype):
                loss = loss_fn(step_model(x), y)
        else:
            loss = loss_fn(step_model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    loss_value = float(loss)
    if loss_value != loss_value:  # NaN: the timed steps did not train
        print(f"torch_resnet50: loss is NaN after {args.warmup + args.steps} steps",
              file=sys.stderr)
        sys.exit(1)

    props = torch.cuda.get_device_properties(dev)
    print(f"gpu: {props.name}, cc {props.major}.{props.minor}, "
          f"{props.total_memory >> 20} MiB, {props.multi_processor_count} SMs")
    print(f"versions: python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}")
    print(f"setup: resnet50, batch {args.batch}, {args.size}x{args.size}, {args.precision} "
          f"autocast, channels_last, SGD momentum 0.9, cudnn.benchmark, "
          f"{'torch.compile' if args.compile else 'eager'}, "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    print(f"time: {dt:.3f} s, {dt / args.steps * 1e3:.1f} ms/step, last loss {loss_value:.4f}, "
          f"peak memory {torch.cuda.max_memory_allocated() >> 20} MiB")
    print(f"RESULT torch_train_img_per_s={args.batch * args.steps / dt:.1f}")


if __name__ == "__main__":
    main()
