"""The training loop: epochs of steps, then validation and checkpoints at each epoch's end, then the final test.

What a run trains with is built by train/build.py, checkpoints are train/state.py, validation and the calibration
fitted on it train/validation.py, the test at the end train/final_test.py, and the run folder's lifecycle (claiming
it, its lock, --overwrite, --resume) train/session.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from pathlib import Path

import torch
from torch import nn

from resnet_cifar import run_folder
from resnet_cifar.config import TrainConfig, save_config
from resnet_cifar.errors import Interrupted, TrainingError
from resnet_cifar.evaluate.evaluation import TestSetting
from resnet_cifar.inference.calibration import temperature_of
from resnet_cifar.runtime import Runtime
from resnet_cifar.train import distributed
from resnet_cifar.train.build import build_run
from resnet_cifar.train.final_test import final_test
from resnet_cifar.train.losses import training_loss
from resnet_cifar.train.progress import RunProgress, format_row, plural, say
from resnet_cifar.train.signals import StopSignal
from resnet_cifar.train.state import EpochTotals, Position, restore_state, save_state
from resnet_cifar.train.validation import validate

STOP_CHECK_STEPS = 20  # GPU + DDP: steps between the (host-synchronising) checks that all ranks agree to stop


class Callback:
    """Hooks into the loop (benchmarks, experiments, tests). Time spent in them is not counted as training."""

    def on_step(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None: ...


class Trainer:
    """One run in `run_dir`: `config` as requested, `runtime` as the entry point resolved it (never re-decided)."""

    def __init__(self, config: TrainConfig, run_dir: Path, runtime: Runtime, *, dist=None, callbacks=(),
                 resume_hint: str | None = None):  # fmt: skip
        self.config, self.runtime, self.run_dir = config, runtime, Path(run_dir)
        self.dist = dist or distributed.DistInfo()
        self.callbacks = list(callbacks)
        # what to tell a user whose run stopped (an experiment's sub-run continues when its command runs again)
        self.resume_hint = resume_hint or f"resnet-cifar train --resume {self.run_dir}"
        self.parts = build_run(config, runtime, self.dist)
        self.epochs = self.parts.epochs  # a benchmark may end the run sooner (the schedule is the whole run's)
        self.position = Position()
        self.history: list[dict] = []
        self.calibration: dict | None = None  # the temperature fitted on the validation split after the last epoch

    # the run's shape and contents, for callers (experiments, benchmarks)
    data = property(lambda self: self.parts.data)
    model = property(lambda self: self.parts.model)
    optimizer = property(lambda self: self.parts.optimizer)
    stream = property(lambda self: self.parts.stream)
    total_steps = property(lambda self: self.parts.total_steps)
    steps_per_epoch = property(lambda self: self.parts.steps_per_epoch)

    @property
    def temperature(self) -> float:
        return temperature_of(self.calibration)

    def predict(self, images: torch.Tensor, tta: int) -> torch.Tensor:
        """Logits of the weights being trained (their moving average when on), in the run's test setting."""
        setting = dataclasses.replace(TestSetting.of_run(self.config), tta=tta)
        return setting.logits(self.parts.eval_model, images, self.runtime)

    # --- checkpoints ---------------------------------------------------------------------------------------------

    def save(self, name: str) -> Path:
        path = run_folder.checkpoint_path(self.run_dir, name)
        save_state(path, self.config, self.position, self.parts, self.runtime, world_size=self.dist.world_size,
                   calibration=self.calibration)  # fmt: skip
        return path

    def load(self, path: Path) -> None:
        """Restore everything needed to continue exactly where the checkpoint was written."""
        self.position, self.calibration = restore_state(path, self.config, self.parts, self.runtime.device)
        rows = run_folder.read_metrics(self.run_dir)
        self.history = [row for row in rows if row["epoch"] <= self.position.epoch]

    # --- the loop ------------------------------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train to the end (or until a signal), then test. Returns the final results (rank 0)."""
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / run_folder.CONFIG)
            run_folder.write_metrics(self.run_dir, self.history)
            self._announce()
        progress = RunProgress(self.config.progress if self.dist.is_main else "none", self.total_steps, self.epochs)
        with StopSignal() as stop:
            while self.position.epoch < self.epochs:
                if self.config.stop_after_epochs is not None and self.position.epoch >= self.config.stop_after_epochs:
                    return self._pause()
                self._train_epoch(stop, progress)
                self._end_epoch(progress)
        results = self._test() if self.config.test_at_end and self.dist.is_main else {}
        distributed.barrier(self.dist)
        return results

    def _test(self) -> dict:
        with distributed.threads_of_waiting_ranks(self.dist, self.runtime.device.type) as threads:
            self.parts.timings["test_threads"] = threads
            return final_test(self.run_dir, self.config, self.data, self.parts.eval_model, self.runtime,
                              history=self.history, timings=self.parts.timings, calibration=self.calibration,
                              ema=self.parts.ema is not None)  # fmt: skip

    def _pause(self) -> dict:
        """Stop at an epoch boundary as configured (stop_after_epochs); the checkpoint is there to resume from."""
        if self.dist.is_main:
            self.save("last")
            say(f"stopped after {plural(self.position.epoch, 'epoch')} as asked (stop_after_epochs); "
                f"resume with: {self.resume_hint}", "lines")  # fmt: skip
        distributed.barrier(self.dist)
        return {}

    def _announce(self) -> None:
        config, data = self.config, self.data
        processes = f", x{self.dist.world_size} processes" if self.dist.enabled else ""
        say(f"run {self.run_dir}: {config.model} on {len(data.train_labels):,} training images "
            f"({len(data.val_labels):,} validation), {plural(self.total_steps, 'step')} of {config.batch_size} "
            f"({plural(self.epochs, 'epoch')}); {self.runtime.describe()}{processes}", config.progress)  # fmt: skip

    def crop_size(self, epoch: int) -> int:
        """Progressive resizing: `crop_size` pixels, then full images for the last `full_size_epochs` epochs."""
        return 32 if epoch >= self.epochs - self.config.full_size_epochs else self.config.crop_size

    def _train_epoch(self, stop: StopSignal, progress: RunProgress) -> None:
        position = self.position
        epoch = position.epoch
        steps = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
        plan = self.stream.plan(epoch, position.epoch_step, self.crop_size(epoch))
        progress.start_epoch(epoch + 1, steps, position.epoch_step)
        # device counters: read (a host sync on a GPU) only when progress is shown and at the end of the epoch
        totals = _EpochCounters(self.runtime.device)
        first_step, started = position.epoch_step, time.perf_counter()
        self.parts.train_model.train()
        while position.epoch_step < steps:
            images, labels = self.stream.batch(plan, position.epoch_step - first_step)
            totals.add(*self._step(images, labels), len(labels))
            position.step, position.epoch_step = position.step + 1, position.epoch_step + 1
            progress.update(position.step, totals.stats(time.perf_counter() - started, self.dist.world_size))
            started += self._run_step_callbacks()
            if self._should_stop(stop, position.epoch_step == steps):
                self._add_to_epoch_totals(totals, time.perf_counter() - started)
                progress.end_epoch("")
                self._interrupt(stop.received or signal.SIGTERM)
        self._add_to_epoch_totals(totals, time.perf_counter() - started)

    def _run_step_callbacks(self) -> float:
        """The callbacks' on_step; returns their seconds (hooks do not count as training time)."""
        if not self.callbacks:
            return 0.0
        paused = time.perf_counter()
        for callback in self.callbacks:
            callback.on_step(self)
        return time.perf_counter() - paused

    def _should_stop(self, stop: StopSignal, epoch_end: bool) -> bool:
        """Whether a signal asks to stop after this step, agreed by all ranks. On a GPU under DDP the agreement is a
        host sync, so it is sought every STOP_CHECK_STEPS steps only (and at each epoch's end)."""
        if not self.dist.enabled:
            return stop.received is not None
        if self.runtime.device.type == "cuda" and not epoch_end and self.position.step % STOP_CHECK_STEPS:
            return False
        return distributed.any_rank(stop.received is not None, self.dist, self.runtime.device)

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on this rank's batch, in `accumulate` micro-batches whose gradients add up.

        Each micro-batch's mean loss is weighted by its share of the batch, so the summed gradient is the batch
        mean's; with halves (a weight of 1/2, exact in floating point) two micro-batches in one process give
        bit-for-bit the gradient of two DDP processes (tests/train/test_distributed.py relies on that).
        """
        parts, config = self.parts, self.config
        images = images.contiguous(memory_format=parts.memory_format)
        lr = parts.schedule(self.position.step)
        for group in parts.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        parts.optimizer.zero_grad(set_to_none=True)
        chunks = list(zip(images.chunk(config.accumulate), labels.chunk(config.accumulate), strict=True))
        loss_total = torch.zeros((), device=self.runtime.device)
        hits = torch.zeros((), dtype=torch.int64, device=self.runtime.device)
        for index, (x, y) in enumerate(chunks):
            last = index == len(chunks) - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else parts.train_model.no_sync()
            with sync:
                with self.runtime.autocast():
                    logits = parts.train_model(x)  # with AugMix's JSD: each image's clean view and two mixes
                    loss, logits = training_loss(logits, y, config.label_smoothing, self.stream.augmentation.views)
                    loss = loss * (len(y) / len(labels)) if len(chunks) > 1 else loss
                loss.backward()
            loss_total += loss.detach()
            hits += (logits.detach().argmax(1) == y).sum()
        self._update(loss_total)
        return loss_total, hits

    def _update(self, loss_total: torch.Tensor) -> None:
        parts, config = self.parts, self.config
        if config.grad_clip:
            nn.utils.clip_grad_norm_(parts.model.parameters(), config.grad_clip)
        if self.runtime.device.type == "cpu" and not torch.isfinite(loss_total):  # free on a CPU; a GPU would sync
            self._nonfinite(loss_total)
        parts.optimizer.step()
        if parts.ema is not None:
            warm = self.position.step < config.ema_warmup * self.steps_per_epoch
            parts.ema.update(parts.model, decay=0.0 if warm else None)

    def _nonfinite(self, loss: torch.Tensor) -> None:
        last = run_folder.checkpoint_path(self.run_dir)
        kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint was written"
        raise TrainingError(
            f"loss became {loss.item()} at step {self.position.step + 1} (epoch {self.position.epoch + 1}); "
            f"training stopped and {kept}. Try a lower lr, or grad_clip."
        )

    def _add_to_epoch_totals(self, counters: _EpochCounters, seconds: float) -> None:
        totals = distributed.all_reduce_sum(counters.stacked(), self.dist).cpu()
        if not torch.isfinite(totals[0]):
            self._nonfinite(totals[0])
        epoch_totals = self.position.totals
        epoch_totals.loss_sum += totals[0].item()
        epoch_totals.correct += int(totals[1].item())
        epoch_totals.count += int(totals[2].item())
        epoch_totals.seconds += seconds

    def _interrupt(self, signum: int) -> None:
        path = run_folder.checkpoint_path(self.run_dir)
        if self.dist.is_main:
            self.save("last")
            say(f"stopped by signal {signum} at step {self.position.step}; checkpoint written to {path}", "lines")
            say(f"resume with: {self.resume_hint}", "lines")
        distributed.barrier(self.dist)
        raise Interrupted(signum, path)

    def _end_epoch(self, progress: RunProgress) -> None:
        """Close the epoch: its metrics row, validation when due, checkpoints, callbacks."""
        position, epoch = self.position, self.position.epoch + 1
        last_epoch = epoch == self.epochs
        row = position.totals.row(epoch, position.step, self.parts.schedule(position.step - 1))
        has_val = self.dist.is_main and len(self.data.val_labels)
        improved = False
        if has_val and (epoch % self.config.eval_every == 0 or last_epoch):
            setting = TestSetting.of_run(self.config)
            fitted = validate(self.parts.eval_model, self.data, setting, self.runtime, row, calibrate=last_epoch)
            self.calibration = fitted or self.calibration
            improved = row["val_acc"] > position.best_val_acc
        if improved:
            position.best_val_acc, position.best_epoch = row["val_acc"], epoch
        position.epoch, position.epoch_step, position.totals = epoch, 0, EpochTotals()
        if self.dist.is_main:
            self.history.append(row)
            run_folder.write_metrics(self.run_dir, self.history)
            progress.end_epoch(format_row(row, self.epochs))
            if epoch % self.config.checkpoint_every == 0 or last_epoch:
                self.save("last")
            if improved:
                self.save("best")
        for callback in self.callbacks:
            callback.on_epoch_end(self, row)
        distributed.barrier(self.dist)


class _EpochCounters:
    """Loss sum, correct count and image count of the epoch so far, kept on the device."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.count = 0

    def add(self, loss: torch.Tensor, hits: torch.Tensor, images: int) -> None:
        self.loss_sum += loss.double() * images
        self.correct += hits
        self.count += images

    def stats(self, seconds: float, world_size: int):
        """What progress shows, read only when it is shown: () -> (loss, accuracy, images/s)."""
        loss_sum, correct, count = self.loss_sum, self.correct, self.count
        return lambda: (loss_sum.item() / count, correct.item() / count, count * world_size / max(seconds, 1e-9))

    def stacked(self) -> torch.Tensor:
        count = torch.tensor(float(self.count), dtype=torch.float64, device=self.loss_sum.device)
        return torch.stack([self.loss_sum, self.correct.double(), count])
