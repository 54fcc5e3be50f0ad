"""Inference speed of a trained model, measured side by side in one run: PyTorch fp32, PyTorch bf16 autocast
(both channels-last) and ONNX Runtime (CPU provider), each at batch 256 (images/s) and on single images (latency
median and 99th percentile).

    python benchmarks/inference.py                       # the shipped default weights
    python benchmarks/inference.py --weights outputs/default --threads 2
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from resnet_cifar.inference.export import Deployable, export_model
from resnet_cifar.inference.loading import load_model
from resnet_cifar.runtime import cpu_has_native_bf16, machine_description
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main


def throughput(run: Callable[[np.ndarray], object], batch: np.ndarray, seconds: float) -> float:
    run(batch)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def latency(run: Callable[[np.ndarray], object], image: np.ndarray, repeats: int) -> tuple[float, float]:
    for _ in range(10):
        run(image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times) * 1000, times[min(len(times) - 1, int(0.99 * len(times)))] * 1000


def torch_runner(model: torch.nn.Module, bf16: bool) -> Callable[[np.ndarray], object]:
    model = model.to(memory_format=torch.channels_last).eval()

    @torch.no_grad()
    def run(x: np.ndarray):
        tensor = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(tensor)

    return run


def onnx_runner(model: torch.nn.Module, threads: int) -> Callable[[np.ndarray], object]:
    import onnxruntime

    path = export_model(model, "onnx", Path(tempfile.mkdtemp()) / "model.onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="run folder or weights file (default: shipped weights)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per throughput figure")
    parser.add_argument("--repeats", type=int, default=300, help="single-image calls per latency figure")
    parser.add_argument("--threads", type=int, default=0, help="threads for PyTorch and ONNX Runtime (0: all cores)")
    ledger.add_flags(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    loaded = load_model(args.weights)
    model = Deployable(loaded.model).eval()
    rng = np.random.default_rng(0)
    batch = rng.random((args.batch_size, 3, 32, 32), dtype=np.float32)
    single = batch[:1].copy()
    runners = {
        "pytorch fp32": torch_runner(model, bf16=False),
        "pytorch bf16": torch_runner(model, bf16=True),
        "onnxruntime fp32": onnx_runner(model, threads),
    }
    if not cpu_has_native_bf16():  # emulated bf16 is hundreds of times slower: nothing to learn from timing it
        del runners["pytorch bf16"]
    print(f"machine: {machine_description()}")
    print(f"model {loaded.name} from {loaded.path}; {threads} threads; torch {torch.__version__}")
    print(f"{'runtime':<18} {'images/s @' + str(args.batch_size):>16} {'latency median ms':>18} {'p99 ms':>8}")
    results = {}
    for name, run in runners.items():
        rate = throughput(run, batch, args.seconds)
        median, p99 = latency(run, single, args.repeats)
        results[name] = (rate, median, p99)
        print(f"{name:<18} {rate:>16,.0f} {median:>18.2f} {p99:>8.2f}", flush=True)
    fp32, ort = results["pytorch fp32"][0], results["onnxruntime fp32"][0]
    bf16 = results.get("pytorch bf16", (math.nan,))[0]
    print(
        f"bf16_vs_fp32={bf16 / fp32:.2f} onnxruntime_vs_fp32={ort / fp32:.2f} "
        f"best_images_per_s={max(fp32, ort, 0 if math.isnan(bf16) else bf16):.0f}"
    )
    if args.record:
        numbers = {
            "weights": loaded.path.name,
            "threads": threads,
            "batch_size": args.batch_size,
            "runtimes": {name: {"images_per_s": r, "median_ms": m, "p99_ms": p} for name, (r, m, p) in results.items()},
        }
        precision = "fp32" if math.isnan(bf16) else "fp32,bf16"
        ledger.append(ledger.record("inference", numbers, precision=precision), args.ledger)
        print(f"recorded in {args.ledger}")


if __name__ == "__main__":
    sys.exit(run_main(main))  # a missing dataset or a bad flag value: one line, no traceback
