"""Training-step and inference speed of a config's model at several batch sizes, and with `torch.compile`, side by
side in one run (synthetic batches; the precision and memory format the config would run in on this machine).

    python benchmarks/step_speed.py --config configs/cpu94.yaml --batch-sizes 500 1000 2000 --compile

Each measurement times a few steps after one warm-up step; `--compile` also reports the compile time (the first
compiled step; less when inductor's on-disk cache already holds it) and then eager again, so a drifting machine
shows up as two different eager rates.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.config import load_config
from resnet_cifar.models import create_model
from resnet_cifar.runtime import choose_runtime, machine_description
from resnet_cifar_lab.scripts import run_main


def freeze_whitening(model: nn.Module) -> None:
    """As training does before its first step: a whitening stem gets its filters (here from random images), which
    then stay frozen, so no gradient is computed for them."""
    if hasattr(getattr(model, "stem", None), "whiten_"):
        model.stem.whiten_(torch.randn(500, 3, 32, 32))


def training_step(model: nn.Module, runtime, x, y, *, label_smoothing: float = 0.0):
    """One synthetic training step (forward under the runtime's autocast, loss, backward, an SGD step with its own
    optimizer) as a callable."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

    def step() -> None:
        with runtime.autocast():
            loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def images_per_second(step, batch: int, repeats: int) -> float:
    step()  # warm-up: kernel selection, caches
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return batch * repeats / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--images", type=int, default=4000, help="images per measurement")
    parser.add_argument("--compile", action="store_true", help="also time the training step under torch.compile")
    args = parser.parse_args()
    config = load_config(args.config)
    runtime = choose_runtime("cpu", config.precision, config.threads)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = create_model(config.model, **config.model_options)
    freeze_whitening(model)
    model = model.to(memory_format=fmt)
    print(f"machine: {machine_description()}; {runtime.reason}; {config.model} of {args.config}", flush=True)

    def train_step(net, x, y):
        return training_step(net, runtime, x, y, label_smoothing=config.label_smoothing)

    def batch(size: int):
        return torch.randn(size, 3, 32, 32).contiguous(memory_format=fmt), torch.randint(0, 10, (size,))

    for size in args.batch_sizes:
        x, y = batch(size)
        model.train()
        rate = images_per_second(train_step(model, x, y), size, max(2, args.images // size))
        model.eval()
        with torch.no_grad(), runtime.autocast():
            infer = images_per_second(lambda m=model, x=x: m(x), size, max(2, args.images // size))
        print(f"batch {size:>5}: training {rate:7.0f} images/s, inference {infer:7.0f} images/s", flush=True)
    if args.compile:
        size = config.batch_size
        x, y = batch(size)
        model.train()
        compiled = torch.compile(model)
        started = time.perf_counter()
        train_step(compiled, x, y)()
        compile_s = time.perf_counter() - started
        rate = images_per_second(train_step(compiled, x, y), size, max(2, args.images // size))
        eager = images_per_second(train_step(model, x, y), size, max(2, args.images // size))
        print(f"batch {size}: compiled {rate:.0f} images/s after {compile_s:.1f} s of compiling; eager {eager:.0f}")


if __name__ == "__main__":
    raise SystemExit(run_main(main))
