"""How close each recipe's training step comes to this machine's own arithmetic limit, measured side by side in one run.

The limit: this machine's rate on dense arithmetic, a 4096 x 4096 matrix product in fp32 and, where the CPU computes
bf16 natively, in bf16; and the convolution that does most of each recipe's work (its largest layer by multiply-
accumulates), forward and backward at the recipe's batch, resolution, precision and memory format. The achieved
rate: the recipe's whole training step on synthetic batches (its model, batch, precision and memory format; also on
24-pixel windows where the recipe starts on them), in FLOP/s from the model's counted multiply-accumulates (2 FLOPs
each, and the backward pass about twice the forward: 6 per MAC and image). Printed: each rate and the ratios.

    python benchmarks/limit.py                                   # configs/fast80.yaml and configs/cpu94.yaml
    python benchmarks/limit.py --configs configs/cpu94-bf16.yaml --record

On an AVX-512 machine, `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2` measures what an
AVX2-only CPU of its clock would (PyTorch's, oneDNN's and MKL's AVX2 kernels; bf16 is then emulated, so only fp32).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from resnet_cifar.config import load_config
from resnet_cifar.models import create_model
from resnet_cifar.models.summary import count_macs
from resnet_cifar.runtime import choose_runtime, cpu_has_native_bf16, machine_description
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main
from step_speed import freeze_whitening, training_step

SIDE = 4096  # the matrix product's side: large enough that its rate is the machine's, not the call's


def best_seconds(run, repeats: int) -> float:
    run()  # warm-up: kernel selection, caches
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def matmul_gflops(dtype: torch.dtype, repeats: int = 3) -> float:
    a, b = torch.randn(SIDE, SIDE, dtype=dtype), torch.randn(SIDE, SIDE, dtype=dtype)
    return 2 * SIDE**3 / best_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def largest_conv(model: nn.Module, size: int) -> tuple[nn.Conv2d, tuple[int, ...], int]:
    """The convolution with the most multiply-accumulates per image, its input shape (one image) and its MACs."""
    found: list[tuple[int, nn.Conv2d, tuple[int, ...]]] = []

    def hook(module, inputs, output) -> None:
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        found.append((output[0].numel() * kernel, module, tuple(inputs[0].shape[1:])))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for handle in handles:
        handle.remove()
    macs, conv, shape = max(found, key=lambda row: row[0])
    return conv, shape, macs


def conv_gflops(conv: nn.Conv2d, shape: tuple[int, ...], macs: int, batch: int, runtime, fmt) -> float:
    """Forward and backward (input and weight gradients) of one copy of `conv` at the recipe's batch."""
    layer = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      bias=conv.bias is not None).to(memory_format=fmt)  # fmt: skip
    x = torch.randn(batch, *shape).contiguous(memory_format=fmt).requires_grad_(True)

    def step() -> None:
        with runtime.autocast():
            out = layer(x)
        out.float().sum().backward()

    return 6 * macs * batch / best_seconds(step, 3) / 1e9


def step_gflops(model: nn.Module, runtime, batch: int, size: int, fmt, smoothing: float) -> tuple[float, float]:
    """(images/s, GFLOP/s) of the whole training step on `size`-pixel images."""
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    step = training_step(model.train(), runtime, x, y, label_smoothing=smoothing)
    seconds = best_seconds(step, max(3, 3000 // batch))
    return batch / seconds, 6 * count_macs(model, size) * batch / seconds / 1e9


def measure(config_path: str, peaks: dict[str, float]) -> dict:
    config = load_config(config_path)
    runtime = choose_runtime("cpu", config.precision, config.threads)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = create_model(config.model, **config.model_options)
    freeze_whitening(model)
    model = model.to(memory_format=fmt)
    sizes = sorted({32, config.crop_size})
    row: dict = {"precision": runtime.precision, "batch": config.batch_size, "steps": {}}
    for size in sizes:
        rate, gflops = step_gflops(model, runtime, config.batch_size, size, fmt, config.label_smoothing)
        conv, shape, macs = largest_conv(model, size)
        conv_rate = conv_gflops(conv, shape, macs, config.batch_size, runtime, fmt)
        peak = peaks[f"matmul_{runtime.precision}"]
        row["steps"][str(size)] = {
            "images_per_s": rate, "gflops": gflops, "largest_conv": [*shape, conv.out_channels],
            "conv_gflops": conv_rate, "of_matmul": gflops / peak, "of_conv": gflops / conv_rate,
        }  # fmt: skip
        print(f"{config_path} {runtime.precision} batch {config.batch_size}, {size} px: step {rate:,.0f} images/s = "
              f"{gflops:,.1f} GFLOP/s; its largest conv {shape} -> {conv.out_channels}: {conv_rate:,.1f} GFLOP/s; "
              f"step / matmul peak {gflops / peak:.2f}, step / that conv {gflops / conv_rate:.2f}",
              flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["configs/fast80.yaml", "configs/cpu94.yaml"])
    ledger.add_flags(parser)
    args = parser.parse_args()
    print(f"machine: {machine_description()}; {torch.get_num_threads()} threads", flush=True)
    peaks = {"matmul_fp32": matmul_gflops(torch.float32)}
    if cpu_has_native_bf16():
        peaks["matmul_bf16"] = matmul_gflops(torch.bfloat16)
    print("matrix product 4096²: " + ", ".join(f"{k.split('_')[1]} {v:,.1f} GFLOP/s" for k, v in peaks.items()))
    recipes = {path: measure(path, peaks) for path in args.configs}
    if args.record:
        precisions = {row["precision"] for row in recipes.values()}
        precision = precisions.pop() if len(precisions) == 1 else "mixed"
        numbers = {"peaks_gflops": peaks, "recipes": recipes, "threads": torch.get_num_threads()}
        entry = ledger.record("limit", numbers, precision=precision)
        if precision == "mixed":
            entry["precision_by_config"] = {path: row["precision"] for path, row in recipes.items()}
        ledger.append(entry, args.ledger)
        print(f"recorded in {args.ledger}")


if __name__ == "__main__":
    sys.exit(run_main(main))
