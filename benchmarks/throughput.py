"""Training and inference speed of any registered model, measured side by side in one run.

1. A matmul peak (fp32 and bf16, 4096 x 4096) of this machine, measured now.
2. Training and inference images/s in fp32 and bf16 autocast, with and without channels-last, on synthetic batches;
   achieved GFLOP/s (training = 3 x forward FLOPs) and its fraction of the matmul peak of the same precision.
3. Our training loop (`Trainer`, real data, augmentation, schedule, metrics) against a bare hand-written PyTorch
   loop doing the same work (same model, data in memory, random crop + flip, SGD, label smoothing, bf16 +
   channels-last), alternated several times; the last line is `loop_vs_bare=<ours / bare images per second>`.

    python benchmarks/throughput.py --model fastnet --model-options '{widths: [32, 64, 128]}'
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from resnet_cifar.config import load_config
from resnet_cifar.data.augment import normalize
from resnet_cifar.models import count_macs, create_model
from resnet_cifar.models.summary import VARIANTS
from resnet_cifar.runtime import choose_runtime, cpu_has_native_bf16, machine_description
from resnet_cifar.train.loop import Trainer
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main


def matmul_peak(dtype: torch.dtype, size: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def images_per_second(
    model_name: str, options: dict, *, train: bool, bf16: bool, channels_last: bool, batch: int, steps: int
) -> float:
    torch.manual_seed(0)
    model = create_model(model_name, **options)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train(train)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if not train:
                with torch.no_grad():
                    return model(x)
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - started)


def bare_loop(
    images: torch.Tensor,
    labels: torch.Tensor,
    model_name: str,
    options: dict,
    batch: int,
    steps: int,
    lr: float,
    bf16: bool,
) -> float:
    """What one writes by hand: shuffle, pad + random crop + flip per batch, normalise, forward/backward in the
    precision our loop chose for this machine.

    Runs 2 x `steps` steps and times the second half, as the first epoch of our loop is not timed either.
    """
    torch.manual_seed(0)
    model = create_model(model_name, **options).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    order = torch.randperm(len(labels))
    started, done = time.perf_counter(), 0
    for step in range(2 * steps):
        if step == steps:
            started, done = time.perf_counter(), 0
        index = order[(step * batch) % (len(labels) - batch) :][:batch]
        x = F.pad(images[index].float(), (2, 2, 2, 2), mode="reflect")
        dy, dx = torch.randint(0, 5, (2, batch))
        x = torch.stack([x[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in range(batch)])
        x = torch.where(torch.rand(batch, 1, 1, 1) < 0.5, x.flip(3), x)
        x = normalize(x).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), labels[index], label_smoothing=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # a hand-written loop logs the loss
        done += batch
    return done / (time.perf_counter() - started)


def our_loop(
    model_name: str, options: dict, batch: int, train_size: int, epochs: int, lr: float, data_dir: str | None
) -> tuple[float, torch.Tensor, torch.Tensor]:
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(
            None,
            {
                "model": model_name,
                "model_options": options,
                "batch_size": batch,
                "train_size": train_size,
                "val_size": 5000,
                "epochs": epochs,
                "lr": lr,
                "label_smoothing": 0.2,
                "crop_padding": 2,
                "progress": "none",
                "plots": False,
                "test_at_end": False,
                "eval_every": 10_000,
                "checkpoint_every": 10_000,
                "output_dir": folder,
                "data_dir": data_dir,
            },
        )
        trainer = Trainer(config, Path(folder) / "run", choose_runtime(config.device, config.precision, config.threads))
        trainer.fit()
        rows = trainer.history[1:] or trainer.history  # the first epoch pays one-off set-up costs
        images = sum(len(trainer.data.train_labels) // batch * batch for _ in rows)
        return images / sum(r["seconds"] for r in rows), trainer.data.train_images, trainer.data.train_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fastnet", help="any registered model")
    parser.add_argument(
        "--model-options",
        default=None,
        help="YAML mapping of builder options (default: fastnet's of `make train` for fastnet, else the model's own)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="steps per synthetic measurement")
    parser.add_argument("--loop-images", type=int, default=10_000, help="training images for the loop comparison")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of ours vs bare")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    ledger.add_flags(parser)
    parser.add_argument("--peak-size", type=int, default=4096, help="side of the square matmul timed for the peak")
    parser.add_argument(
        "--emulated-bf16",
        action="store_true",
        help="also time bf16 where it is emulated (AVX2)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = choose_runtime("cpu", "auto")
    print(f"machine: {machine_description()}; auto precision: {chosen.reason}")
    precisions = (False, True) if cpu_has_native_bf16() or args.emulated_bf16 else (False,)
    if precisions == (False,):
        print("bf16 rows skipped: this CPU has no native bf16 (--emulated-bf16 to measure them anyway)")
    if args.model_options is not None:
        options = yaml.safe_load(args.model_options) or {}
    else:
        options = dict(VARIANTS["fastnet 32-64-128 (make train)"][1]) if args.model == "fastnet" else {}
    macs = count_macs(create_model(args.model, **options))
    peaks = {bf16: matmul_peak(torch.bfloat16 if bf16 else torch.float32, args.peak_size) for bf16 in precisions}
    print(
        f"{args.model} {options}: {macs / 1e6:.1f} MMACs/image; {torch.get_num_threads()} threads; matmul peak "
        + ", ".join(f"{'bf16' if bf16 else 'fp32'} {peak:.0f} GFLOP/s" for bf16, peak in peaks.items())
    )
    print(f"{'mode':<10} {'precision':<9} {'layout':<14} {'images/s':>9} {'GFLOP/s':>8} {'of peak':>8}")
    rates: dict[str, dict[str, dict[str, float]]] = {}
    for train in (True, False):
        for bf16 in precisions:
            for channels_last in (False, True):
                rate = images_per_second(
                    args.model,
                    options,
                    train=train,
                    bf16=bf16,
                    channels_last=channels_last,
                    batch=args.batch_size,
                    steps=args.steps,
                )
                gflops = rate * macs * 2 * (3 if train else 1) / 1e9
                layouts = rates.setdefault("train" if train else "inference", {}).setdefault(
                    "bf16" if bf16 else "fp32", {}
                )
                layouts["channels_last" if channels_last else "contiguous"] = round(rate, 1)
                print(
                    f"{'train' if train else 'inference':<10} {'bf16' if bf16 else 'fp32':<9} "
                    f"{'channels_last' if channels_last else 'contiguous':<14} {rate:>9,.0f} {gflops:>8.0f} "
                    f"{gflops / peaks[bf16]:>8.0%}",
                    flush=True,
                )
    lr, ours, bare = 0.2, [], []
    for _ in range(args.rounds):
        rate, images, labels = our_loop(args.model, options, args.batch_size, args.loop_images, 2, lr, args.data_dir)
        ours.append(rate)
        steps = len(labels) // args.batch_size
        bare.append(bare_loop(images, labels, args.model, options, args.batch_size, steps, lr, chosen.bf16))
        print(f"loop round: ours {ours[-1]:,.0f} images/s, bare {bare[-1]:,.0f} images/s", flush=True)
    ratio = statistics.median(ours) / statistics.median(bare)
    print(
        f"our loop {statistics.median(ours):,.0f} vs bare loop {statistics.median(bare):,.0f} images/s "
        f"(medians of {args.rounds})"
    )
    print(f"loop_vs_bare={ratio:.3f}")
    if args.record:
        numbers = {"model": args.model, "model_options": options, "batch_size": args.batch_size, "images_per_s": rates,
                   "loop_vs_bare": round(ratio, 3)}  # fmt: skip
        ledger.append(ledger.record("throughput", numbers, precision=chosen.precision), args.ledger)
        print(f"recorded in {args.ledger}")


if __name__ == "__main__":
    sys.exit(run_main(main))  # a missing dataset or a bad flag value: one line, no traceback
