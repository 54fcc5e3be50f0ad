"""Where a training step's convolution time goes, layer by layer: forward, backward to the input, backward to the
filters (oneDNN's kernels), the filters' gradient computed instead as one matrix product per filter tap, and on maps
of at most 3 pixels a side the whole layer (forward and both gradients) as dense matrix products, side by side in
one run (synthetic batches, the config's precision and memory format).

    python benchmarks/conv_backward.py --config configs/cpu94.yaml --crop-sizes 24 32
    python benchmarks/conv_backward.py --config configs/cpu94.yaml --crop-sizes 24 32 --whole-steps --max-sides 0 7
    python benchmarks/conv_backward.py --config configs/cpu94.yaml --crop-sizes 24 32 --whole-steps --max-sides 0 \
        --dense-sides 3

The four are timed in turn, round after round, and each is reported as its median, so a virtual machine whose speed
drifts slows them alike. `taps/native` below 1 means the per-tap products would compute that layer's filter gradient
faster than oneDNN does; the gradients are compared too (relative error in float32). `--whole-steps` then times
whole training steps (forward, loss, backward, an SGD step) of the config's model with each `tap_grad_max_side` of
`--max-sides` (0: every filter gradient oneDNN's) and each `dense_conv_max_side` of `--dense-sides`, interleaved step
by step, the same weights in each; the ratio is each against the first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.config import load_config
from resnet_cifar.models import create_model
from resnet_cifar.runtime import choose_runtime, machine_description
from resnet_cifar_lab.conv_kernels import with_kernels
from resnet_cifar_lab.scripts import run_main
from resnet_cifar_lab.small_map_conv import dense_conv3x3
from resnet_cifar_lab.tap_conv import tap_weight_grad
from step_speed import freeze_whitening, training_step  # the sibling benchmark's synthetic step


def conv_inputs(model: nn.Module, images: torch.Tensor) -> list[tuple[nn.Conv2d, torch.Size]]:
    """Every convolution of one forward pass with the shape of its input, in the order they run."""
    seen: list[tuple[nn.Conv2d, torch.Size]] = []
    hooks = [
        m.register_forward_hook(lambda m, args, out: seen.append((m, args[0].shape)))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return seen


def median_ms(jobs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    for job in jobs.values():
        job()  # warm-up: kernel selection
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            started = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(seconds) for name, seconds in times.items()}


def layer_jobs(conv: nn.Conv2d, shape: torch.Size, dtype: torch.dtype, fmt: torch.memory_format) -> dict:
    x = torch.randn(shape).to(dtype).contiguous(memory_format=fmt)
    w = conv.weight.detach().to(dtype).contiguous(memory_format=fmt)
    out = F.conv2d(x, w, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    grad_out = torch.randn_like(out)
    args = (grad_out, x, w, None, list(conv.stride), list(conv.padding), list(conv.dilation), False, [0, 0])
    backward = torch.ops.aten.convolution_backward
    jobs = {
        "forward": lambda: F.conv2d(x, w, None, conv.stride, conv.padding, conv.dilation, conv.groups),
        "backward input": lambda: backward(*args, conv.groups, [True, False, False]),
        "backward filters": lambda: backward(*args, conv.groups, [False, True, False]),
    }
    square = conv.kernel_size[0] == conv.kernel_size[1] and conv.padding[0] == conv.padding[1]
    if conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and square:
        jobs["taps"] = lambda: tap_weight_grad(x, grad_out, conv.kernel_size[0], conv.padding[0])
        native = backward(*args, conv.groups, [False, True, False])[1].float()
        error = (jobs["taps"]().float() - native).norm() / native.norm().clamp(min=1e-12)
        jobs["error"] = float(error)
    if max(shape[2:]) <= 3 and conv.kernel_size == (3, 3) and conv.padding == (1, 1) and jobs.get("taps"):
        jobs["dense"] = dense_layer_step(x, conv.weight.detach().to(dtype), grad_out)
    return jobs


def dense_layer_step(x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor) -> Callable[[], object]:
    """The layer's forward pass and both its gradients as dense matrix products (resnet_cifar_lab.small_map_conv)."""
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()

    def step():
        x.grad = weight.grad = None
        dense_conv3x3(x, weight).backward(grad_out)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--crop-sizes", type=int, nargs="+", default=[32], help="image sides to measure at")
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--whole-steps", action="store_true", help="also time whole training steps per max side")
    parser.add_argument("--max-sides", type=int, nargs="+", default=[0, 7], help="tap_grad_max_side values to race")
    parser.add_argument("--dense-sides", type=int, nargs="*", default=[], help="dense_conv_max_side values to race")
    args = parser.parse_args()
    config = load_config(args.config)
    runtime = choose_runtime("cpu", config.precision, config.threads)
    dtype = torch.bfloat16 if runtime.bf16 else torch.float32
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    batch = args.batch_size or config.batch_size
    model = create_model(config.model, **config.model_options).eval()
    print(f"machine: {machine_description()}; {runtime.describe()}; {config.model} of {args.config}, batch {batch}")
    for size in args.crop_sizes:
        totals = dict.fromkeys(("forward", "backward input", "backward filters", "best filters"), 0.0)
        for conv, shape in conv_inputs(model, torch.randn(2, 3, size, size)):
            shape = torch.Size([batch, *shape[1:]])
            jobs = layer_jobs(conv, shape, dtype, fmt)
            error = jobs.pop("error", None)
            ms = median_ms(jobs, args.rounds)
            for name in ("forward", "backward input", "backward filters"):
                totals[name] += ms[name]
            totals["best filters"] += min(ms["backward filters"], ms.get("taps", float("inf")))
            print(f"{size} px, {layer_line(conv, shape, ms, error)}", flush=True)
        print(f"{size} px, all convolutions: {totals_line(totals)}")
    if args.whole_steps:
        for size in args.crop_sizes:
            variants = {
                f"tap_grad_max_side {s}": {"tap_grad_max_side": s, "dense_conv_max_side": 0} for s in args.max_sides
            }
            variants |= {
                f"dense_conv_max_side {s}": {"dense_conv_max_side": s, "tap_grad_max_side": 0} for s in args.dense_sides
            }
            rates = whole_step_rates(config, runtime, fmt, batch, size, variants, args.rounds)
            first = next(iter(rates.values()))
            line = ", ".join(f"{name}: {rate:.0f} images/s ({rate / first:.2f}x)" for name, rate in rates.items())
            print(f"{size} px, whole training steps (median of {args.rounds}): {line}", flush=True)


def whole_step_rates(config, runtime, fmt, batch: int, size: int, variants: dict[str, dict], rounds: int) -> dict:
    """Training images per second of the config's model with each variant's model options, one step of each in
    turn."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    models = {
        name: with_kernels(create_model(config.model, **config.model_options), **opts)
        for name, opts in variants.items()
    }
    first = next(iter(models.values()))
    for model in models.values():
        freeze_whitening(model)
        model.load_state_dict(first.state_dict())
    steps = {name: training_step(m.to(memory_format=fmt).train(), runtime, x, y) for name, m in models.items()}
    seconds = median_ms(steps, rounds)
    return {name: batch / (ms / 1000) for name, ms in seconds.items()}


def layer_line(conv: nn.Conv2d, shape: torch.Size, ms: dict[str, float], error: float | None) -> str:
    line = (
        f"{conv.in_channels:>3}->{conv.out_channels:<3} k{conv.kernel_size[0]} at {shape[2]:>2}x{shape[3]:<2}: "
        f"forward {ms['forward']:6.1f} ms, backward input {ms['backward input']:6.1f}, "
        f"backward filters {ms['backward filters']:6.1f}"
    )
    if "taps" in ms:
        ratio = ms["taps"] / ms["backward filters"]
        line += f", taps {ms['taps']:6.1f} (taps/native {ratio:.2f}, error {error:.1e})"
    if "dense" in ms:
        native = ms["forward"] + ms["backward input"] + ms["backward filters"]
        line += f"; dense forward + backward {ms['dense']:6.1f} (dense/native {ms['dense'] / native:.2f})"
    return line


def totals_line(totals: dict[str, float]) -> str:
    native = totals["forward"] + totals["backward input"] + totals["backward filters"]
    best = native - totals["backward filters"] + totals["best filters"]
    return (
        f"forward {totals['forward']:.0f} ms, backward input {totals['backward input']:.0f}, backward filters "
        f"{totals['backward filters']:.0f} ({totals['backward filters'] / native:.0%} of {native:.0f}); with the "
        f"faster filter gradient of each layer {best:.0f} ({native / best:.2f}x)"
    )


if __name__ == "__main__":
    raise SystemExit(run_main(main))
