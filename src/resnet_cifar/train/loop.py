"""The training loop: one `Trainer` per run folder.

Run folder layout: config.yaml, metrics.csv, last.safetensors (+ .json), best.safetensors (+ .json),
results.json, inference.png, curves.png, confusion_matrix.png.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.data.augment import Augmentation, normalize
from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.errors import CheckpointError, ConfigError, Interrupted, TrainingError
from resnet_cifar.evaluate.inference import autocast_context, predict_logits
from resnet_cifar.models import create_model
from resnet_cifar.runtime import choose_runtime, enable_determinism, let_cudnn_choose_kernels
from resnet_cifar.train import distributed
from resnet_cifar.train.checkpoint import (
    atomic_write_bytes,
    clean_state_dict,
    load_checkpoint,
    save_checkpoint,
    split_prefix,
)
from resnet_cifar.train.config import TrainConfig, save_config
from resnet_cifar.train.data import BatchStream, TrainingData, derive_seed, prepare_data
from resnet_cifar.train.ema import EMA
from resnet_cifar.train.progress import RunProgress, plural, say
from resnet_cifar.train.schedule import build_schedule

METRIC_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "seconds",
    "images_per_s",
    "val_seconds",
)
TIMING_COLUMNS = ("seconds", "images_per_s", "val_seconds")  # the only columns that differ between identical runs
STOP_CHECK_STEPS = 20  # GPU + DDP: steps between the (host-synchronising) checks that all ranks agree to stop


def build_model(config: TrainConfig) -> nn.Module:
    try:
        return create_model(config.model, **config.model_options)
    except TypeError as error:
        raise ConfigError(f"model_options for {config.model}: {error}") from None


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.SGD:
    decay, no_decay = [], []
    for parameter in model.parameters():
        # Norm scales/shifts and biases are the 1-d parameters.
        (decay if config.decay_norm_and_bias or parameter.ndim > 1 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0
    )


@dataclass
class EpochTotals:
    """Running sums of the epoch in progress (kept in checkpoints so a resumed epoch reports the same numbers)."""

    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "count": self.count, "seconds": self.seconds}


@dataclass
class Position:
    epoch: int = 0  # 0-based index of the epoch in progress (= completed epochs at an epoch boundary)
    epoch_step: int = 0  # steps done inside that epoch
    step: int = 0  # global optimizer steps done
    best_val_acc: float = -1.0
    best_epoch: int = 0
    totals: EpochTotals = field(default_factory=EpochTotals)


class StopSignal:
    """Turns SIGINT/SIGTERM/SIGHUP into a flag the loop checks after each step (finish it, checkpoint, exit).

    A step can take seconds, so an impatient second Ctrl-C is expected: it only says that the checkpoint is coming
    (stopping mid-step would leave nothing to resume from). A third one stops at once, without a checkpoint."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self):
        self.received: int | None = None
        self.count = 0
        self._previous = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.count += 1
        if self.count >= 3:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum
        else:
            print(
                "finishing the current step to write a checkpoint; press Ctrl-C once more to quit without one",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Callback:
    """Hooks into the loop (benchmarks, experiments, tests). Time spent in them is not counted as training."""

    def on_step(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None: ...


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        dist: distributed.DistInfo | None = None,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
    ):
        self.config = config
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir)
        self.dist = dist or distributed.DistInfo()
        self.runtime = choose_runtime(config.device, config.bf16, config.threads)
        self.device = self.runtime.device
        if config.deterministic:
            enable_determinism(self.device)
        else:
            let_cudnn_choose_kernels(self.device)
        torch.manual_seed(config.seed)
        started = time.perf_counter()
        self.data: TrainingData = self._prepare_data()
        # where the time of a run goes (results.json); the training loop's own time is in metrics.csv
        self.timings = {"data_s": time.perf_counter() - started}
        started = time.perf_counter()
        self.stream = BatchStream(
            self.data.train_images.to(self.device),  # uint8: 150 MB for all 50,000 images
            self.data.train_labels.to(self.device),
            Augmentation(config.crop_padding, config.pad_mode, config.flip, config.cutout),
            config.batch_size,
            derive_seed(config.seed, 1),
            self.dist.rank,
            self.dist.world_size,
        )
        if config.accumulate > self.stream.per_rank:
            raise ConfigError(f"accumulate: {config.accumulate} micro-batches of a {self.stream.per_rank}-image batch")
        self.steps_per_epoch = self.stream.steps_per_epoch
        self.total_steps = config.steps or max(1, round(config.epochs * self.steps_per_epoch))
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.schedule = build_schedule(config, self.total_steps, self.steps_per_epoch)

        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = build_model(config)
        self._init_from_data(self.model)
        self.model = self.model.to(self.device, memory_format=self.memory_format)
        if self.dist.enabled and config.sync_bn:
            self.model = distributed.convert_sync_batchnorm(self.model, self.device.type)
        self.optimizer = build_optimizer(config, self.model)
        self.ema = EMA(self.model, config.ema) if config.ema > 0 else None
        self.train_model = self._wrap(self.model)
        self.timings["setup_s"] = time.perf_counter() - started
        self.position = Position()
        self.history: list[dict] = []

    def _init_from_data(self, model: nn.Module) -> None:
        """Layers initialised from the training images (a patch-whitening stem), from a fixed sample."""
        stem = getattr(model, "stem", None)
        if hasattr(stem, "whiten_"):
            generator = torch.Generator().manual_seed(derive_seed(self.config.seed, 2))
            sample = torch.randperm(len(self.data.train_labels), generator=generator)[:5000]
            stem.whiten_(normalize(self.data.train_images[sample]))

    def _prepare_data(self) -> TrainingData:
        """Rank 0 first, so that only one process ever downloads or extracts the dataset."""
        if not self.dist.is_main:
            distributed.barrier(self.dist)
        data = prepare_data(self.config)
        if self.dist.is_main:
            distributed.barrier(self.dist)
        return data

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.config.compile:
            model = torch.compile(model)
        return model

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, tested and shipped: the moving average when it is on."""
        return self.ema.model if self.ema is not None else self.model

    # --- checkpoints ---------------------------------------------------------------------------------------------

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in clean_state_dict(self.model.state_dict()).items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in clean_state_dict(self.ema.state_dict()).items()})
        for index, parameter in enumerate(self.model.parameters()):
            buffer = self.optimizer.state.get(parameter, {}).get("momentum_buffer")
            if buffer is not None:
                tensors[f"optimizer.momentum.{index}"] = buffer
        tensors["rng.torch"] = torch.get_rng_state()
        return tensors

    def _metadata(self) -> dict:
        p = self.position
        return {
            "config": self.config.to_dict(),
            "model": self.config.model,
            "model_options": self.config.model_options,
            "epoch": p.epoch,
            "epoch_step": p.epoch_step,
            "step": p.step,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "global_batch": self.config.batch_size,
            "world_size": self.dist.world_size,
            "best_val_acc": p.best_val_acc,
            "best_epoch": p.best_epoch,
            "epoch_totals": p.totals.as_dict(),
            "optimizer": {
                "name": "sgd",
                "lr": self.schedule(p.step),
                "momentum": self.config.momentum,
                "nesterov": self.config.nesterov,
                "weight_decay": self.config.weight_decay,
            },
            "schedule": {"kind": self.schedule.kind, "step": p.step, "total_steps": self.total_steps},
            "ema": self.ema is not None,
            "classes": list(CLASSES),
            "data_folder": str(self.data.folder.resolve()),
            "runtime": self.runtime.as_dict(),
            "torch_version": torch.__version__,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def save(self, name: str) -> Path:
        path = self.run_dir / f"{name}.safetensors"
        save_checkpoint(path, self._tensors(), self._metadata())
        return path

    def load(self, path: Path) -> None:
        """Restore everything needed to continue exactly where the checkpoint was written."""
        tensors, meta = load_checkpoint(path)
        if not meta:
            raise CheckpointError(f"{path} holds weights only, no training state to resume from")
        if meta["global_batch"] != self.config.batch_size or meta["total_steps"] != self.total_steps:
            raise CheckpointError(f"{path} was written for a different batch size or length of training")
        self.model.load_state_dict(split_prefix(tensors, "model"))
        if self.ema is not None:
            self.ema.load_state_dict(split_prefix(tensors, "ema"))
        for index, parameter in enumerate(self.model.parameters()):
            key = f"optimizer.momentum.{index}"
            if key in tensors:
                self.optimizer.state[parameter]["momentum_buffer"] = tensors[key].to(self.device)
        torch.set_rng_state(tensors["rng.torch"])
        totals = EpochTotals(**meta["epoch_totals"])
        self.position = Position(
            meta["epoch"], meta["epoch_step"], meta["step"], meta["best_val_acc"], meta["best_epoch"], totals
        )
        self.history = [row for row in read_metrics(self.run_dir / "metrics.csv") if row["epoch"] <= meta["epoch"]]

    # --- the loop ------------------------------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train to the end (or until a signal), then test. Returns the final results (rank 0)."""
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / "config.yaml")
            self._write_metrics()
            self._announce()
        progress = RunProgress(self.config.progress if self.dist.is_main else "none", self.total_steps, self.epochs)
        with StopSignal() as stop:
            while self.position.epoch < self.epochs:
                if self.config.stop_after_epochs is not None and self.position.epoch >= self.config.stop_after_epochs:
                    return self._pause()
                self._train_epoch(stop, progress)
                self._end_epoch(progress)
        results = self.test() if self.config.test_at_end else {}
        distributed.barrier(self.dist)
        return results

    def _pause(self) -> dict:
        """Stop at an epoch boundary as configured (stop_after_epochs); the checkpoint is there to resume from."""
        if self.dist.is_main:
            self.save("last")
            say(
                f"stopped after {plural(self.position.epoch, 'epoch')} as asked (stop_after_epochs); "
                f"resume with: resnet-cifar train --resume {self.run_dir}",
                "lines",
            )
        distributed.barrier(self.dist)
        return {}

    def _announce(self) -> None:
        c = self.config
        processes = f", x{self.dist.world_size} processes" if self.dist.enabled else ""
        say(
            f"run {self.run_dir}: {c.model} on {len(self.data.train_labels):,} training images "
            f"({len(self.data.val_labels):,} validation), {self.total_steps:,} steps of {c.batch_size} "
            f"({plural(self.epochs, 'epoch')}); {self.runtime.describe()}{processes}",
            c.progress,
        )

    def crop_size(self, epoch: int) -> int:
        """Progressive resizing: `crop_size` pixels, then full images for the last `full_size_epochs` epochs."""
        return 32 if epoch >= self.epochs - self.config.full_size_epochs else self.config.crop_size

    def _epoch_steps(self, epoch: int) -> int:
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    def _train_epoch(self, stop: StopSignal, progress: RunProgress) -> None:
        p = self.position
        epoch, steps = p.epoch, self._epoch_steps(p.epoch)
        plan = self.stream.plan(epoch, p.epoch_step, self.crop_size(epoch))
        progress.start_epoch(epoch + 1, steps, p.epoch_step)
        # device counters: read (a host sync on a GPU) only when progress is shown and at the end of the epoch
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        count, first_step = 0, p.epoch_step
        started = time.perf_counter()
        self.train_model.train()
        while p.epoch_step < steps:
            images, labels = self.stream.batch(plan, p.epoch_step - first_step)
            loss, hits = self._step(images, labels)
            loss_sum += loss.double() * len(labels)
            correct += hits
            count += len(labels)
            p.step += 1
            p.epoch_step += 1
            elapsed = time.perf_counter() - started

            def stats(ls=loss_sum, hs=correct, n=count, t=elapsed):
                return ls.item() / n, hs.item() / n, n * self.dist.world_size / max(t, 1e-9)

            progress.update(p.step, stats)
            if self.callbacks:
                paused = time.perf_counter()
                for callback in self.callbacks:
                    callback.on_step(self)
                started += time.perf_counter() - paused  # hooks do not count as training time
            if self._should_stop(stop, p.epoch_step == steps):
                self._accumulate(loss_sum, correct, count, time.perf_counter() - started)
                progress.end_epoch("")
                self._interrupt(stop.received or signal.SIGTERM)
        self._accumulate(loss_sum, correct, count, time.perf_counter() - started)

    def _should_stop(self, stop: StopSignal, epoch_end: bool) -> bool:
        """Whether a signal asks to stop after this step, agreed by all ranks. On a GPU under DDP the agreement is a
        host sync, so it is sought every STOP_CHECK_STEPS steps only (and at each epoch's end)."""
        if not self.dist.enabled:
            return stop.received is not None
        if self.device.type == "cuda" and not epoch_end and self.position.step % STOP_CHECK_STEPS:
            return False
        return distributed.any_rank(stop.received is not None, self.dist, self.device)

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on this rank's batch, in `accumulate` micro-batches whose gradients add up.

        Each micro-batch's mean loss is weighted by its share of the batch, so the summed gradient is the batch
        mean's; with halves (a weight of 1/2, exact in floating point) two micro-batches in one process give
        bit-for-bit the gradient of two DDP processes (tests/test_distributed.py relies on that).
        """
        images = images.contiguous(memory_format=self.memory_format)
        lr = self.schedule(self.position.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        chunks = list(zip(images.chunk(self.config.accumulate), labels.chunk(self.config.accumulate), strict=True))
        loss_total = torch.zeros((), device=self.device)
        hits = torch.zeros((), dtype=torch.int64, device=self.device)
        for index, (x, y) in enumerate(chunks):
            last = index == len(chunks) - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.train_model.no_sync()
            with sync:
                with autocast_context(self.device, self.runtime.bf16):
                    logits = self.train_model(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=self.config.label_smoothing)
                    loss = loss * (len(y) / len(labels)) if len(chunks) > 1 else loss
                loss.backward()
            loss_total += loss.detach()
            hits += (logits.detach().argmax(1) == y).sum()
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        if self.device.type == "cpu" and not torch.isfinite(loss_total):  # free on a CPU; a host sync on a GPU
            self._nonfinite(loss_total)
        self.optimizer.step()
        if self.ema is not None:
            warm = self.position.step < self.config.ema_warmup * self.steps_per_epoch
            self.ema.update(self.model, decay=0.0 if warm else None)
        return loss_total, hits

    def _nonfinite(self, loss: torch.Tensor) -> None:
        last = self.run_dir / "last.safetensors"
        kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint was written"
        raise TrainingError(
            f"loss became {loss.item()} at step {self.position.step + 1} (epoch {self.position.epoch + 1}); "
            f"training stopped and {kept}. Try a lower lr, or grad_clip."
        )

    def _accumulate(self, loss_sum: torch.Tensor, correct: torch.Tensor, count: int, seconds: float) -> None:
        totals = torch.stack(
            [loss_sum, correct.double(), torch.tensor(float(count), dtype=torch.float64, device=self.device)]
        )
        totals = distributed.all_reduce_sum(totals, self.dist).cpu()
        if not torch.isfinite(totals[0]):
            self._nonfinite(totals[0])
        t = self.position.totals
        t.loss_sum += totals[0].item()
        t.correct += int(totals[1].item())
        t.count += int(totals[2].item())
        t.seconds += seconds

    def _interrupt(self, signum: int) -> None:
        path = self.run_dir / "last.safetensors"
        if self.dist.is_main:
            self.save("last")
            say(f"stopped by signal {signum} at step {self.position.step}; checkpoint written to {path}", "lines")
            say(f"resume with: resnet-cifar train --resume {self.run_dir}", "lines")
        distributed.barrier(self.dist)
        raise Interrupted(signum, path)

    def _end_epoch(self, progress: RunProgress) -> None:
        p, c = self.position, self.config
        epoch = p.epoch + 1
        last_epoch = epoch == self.epochs
        row = {
            "epoch": epoch,
            "step": p.step,
            "lr": self.schedule(p.step - 1),
            "train_loss": p.totals.loss_sum / max(p.totals.count, 1),
            "train_acc": p.totals.correct / max(p.totals.count, 1),
            "val_loss": None,
            "val_acc": None,
            "seconds": p.totals.seconds,
            "images_per_s": p.totals.count / max(p.totals.seconds, 1e-9),
            "val_seconds": None,
        }
        improved = False
        if self.dist.is_main and len(self.data.val_labels) and (epoch % c.eval_every == 0 or last_epoch):
            started = time.perf_counter()
            logits = self.predict(self.data.val_images, tta=0)
            row["val_loss"] = F.cross_entropy(logits, self.data.val_labels).item()
            row["val_acc"] = (logits.argmax(1) == self.data.val_labels).double().mean().item()
            row["val_seconds"] = time.perf_counter() - started
            improved = row["val_acc"] > p.best_val_acc
            if improved:
                p.best_val_acc, p.best_epoch = row["val_acc"], epoch
        p.epoch, p.epoch_step, p.totals = epoch, 0, EpochTotals()
        if self.dist.is_main:
            self.history.append(row)
            self._write_metrics()
            progress.end_epoch(format_row(row, self.epochs))
            if epoch % c.checkpoint_every == 0 or last_epoch:
                self.save("last")
            if improved:
                self.save("best")
        for callback in self.callbacks:
            callback.on_epoch_end(self, row)
        distributed.barrier(self.dist)

    def predict(self, images: torch.Tensor, tta: int) -> torch.Tensor:
        return predict_logits(
            self.eval_model,
            images,
            tta=tta,
            batch_size=self.config.eval_batch_size,
            device=self.device,
            bf16=self.runtime.bf16,
            channels_last=self.config.channels_last,
        )

    def train_seconds(self) -> float:
        return sum(row["seconds"] for row in self.history)

    def _write_metrics(self) -> None:
        atomic_write_bytes(self.run_dir / "metrics.csv", metrics_csv(self.history).encode())

    # --- the end -------------------------------------------------------------------------------------------------

    def test(self) -> dict:
        """Test-set evaluation of the final weights (rank 0): pictures, results.json, and the summary line."""
        if not self.dist.is_main:
            return {}
        from resnet_cifar.evaluate.report import write_results
        from resnet_cifar.evaluate.runner import save_logits

        started = time.perf_counter()
        test = self.data.load_test()
        logits = self.predict(test.images, tta=self.config.tta)
        self.timings["test_s"] = time.perf_counter() - started
        save_logits(self.run_dir, logits, self.config.tta, "last")
        if self.config.plots:
            from resnet_cifar.viz.report import describe_predictions, write_run_pictures

            started = time.perf_counter()
            write_run_pictures(
                self.run_dir,
                test.images,
                test.labels,
                logits,
                seed=self.config.seed,
                publish_to=Path(self.config.output_dir) / "inference.png" if self.config.publish_picture else None,
                label_smoothing=self.config.label_smoothing,
                which=describe_predictions("last", self.config.tta, self.ema is not None),
            )
            self.timings["pictures_s"] = time.perf_counter() - started
        self.timings["train_s"] = self.train_seconds()
        self.timings["validation_s"] = sum(row["val_seconds"] or 0.0 for row in self.history)
        return write_results(
            self.run_dir,
            logits,
            test.labels,
            tta=self.config.tta,
            weights="last",
            seconds=self.timings["test_s"],
            model=self.config.model,
            ema=self.ema is not None,
            train_images=len(self.data.train_labels),
            train_seconds=self.train_seconds(),
            runtime=self.runtime.as_dict(),
            timings={key: round(value, 3) for key, value in self.timings.items()},
        )


def format_row(row: dict, epochs: int) -> str:
    text = (
        f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}  "
        f"lr {row['lr']:.4g}  {row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s"
    )
    if row["val_acc"] is not None:
        text += f"  | val loss {row['val_loss']:.4f}  acc {row['val_acc']:.4f}"
    return text


def metrics_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: ("" if row[k] is None else repr(row[k]) if isinstance(row[k], float) else row[k])
                for k in METRIC_COLUMNS
            }
        )
    return buffer.getvalue()


def read_metrics(path: Path) -> list[dict]:
    """Rows of a metrics.csv with numbers parsed (empty cells -> None)."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key in METRIC_COLUMNS:
                value = raw.get(key, "")
                row[key] = None if value in ("", None) else (int(value) if key in ("epoch", "step") else float(value))
            rows.append(row)
    return rows
