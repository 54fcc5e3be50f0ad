"""The training loop: one `Trainer` per run folder (its files: resnet_cifar/run_folder.py).

Set-up, the loop over epochs and steps, validation and checkpoints at epoch ends. Signals are train/signals.py,
what a checkpoint holds is train/state.py, and the test at the end is train/final_test.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import (
    load_checkpoint,
    save_checkpoint,
)
from resnet_cifar.config import TrainConfig, save_config
from resnet_cifar.data.augment import normalize
from resnet_cifar.errors import CheckpointError, ConfigError, Interrupted, TrainingError
from resnet_cifar.inference.calibration import temperature_calibration, temperature_of
from resnet_cifar.inference.tta import predict_logits, predict_logits_and_single_view
from resnet_cifar.runtime import Runtime, choose_runtime, enable_determinism, let_cudnn_choose_kernels
from resnet_cifar.seeding import BATCH_STREAM, WHITENING_SAMPLE, derive_seed
from resnet_cifar.train import distributed
from resnet_cifar.train.batches import BatchStream, TrainingData, augmentation_of, prepare_data
from resnet_cifar.train.build import build_model, build_optimizer, start_importing_optimizer_machinery
from resnet_cifar.train.ema import EMA
from resnet_cifar.train.final_test import final_test
from resnet_cifar.train.losses import training_loss
from resnet_cifar.train.progress import RunProgress, format_row, plural, say
from resnet_cifar.train.schedule import build_schedule
from resnet_cifar.train.signals import StopSignal
from resnet_cifar.train.state import EpochTotals, Position, checkpoint_metadata, pack_state, unpack_state

STOP_CHECK_STEPS = 20  # GPU + DDP: steps between the (host-synchronising) checks that all ranks agree to stop


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
        runtime: Runtime | None = None,
        resume_hint: str | None = None,
    ):
        """`runtime`: the device and precision resolved by the caller (the CLI resolves it once, and under torchrun
        for all ranks); chosen here from `config` when not given. The config this run records holds the precision
        it runs in, never "auto", so a resumed run computes in the same one."""
        self.runtime = runtime or choose_runtime(config.device, config.bf16, config.threads)
        self.config = config = dataclasses.replace(config, bf16=self.runtime.bf16)
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir)
        # what to tell a user whose run stopped (an experiment's sub-run continues when its command runs again)
        self.resume_hint = resume_hint or f"resnet-cifar train --resume {self.run_dir}"
        self.dist = dist or distributed.DistInfo()
        self.device = self.runtime.device
        if config.deterministic:
            enable_determinism(self.device)
        else:
            let_cudnn_choose_kernels(self.device)
        torch.manual_seed(config.seed)
        model = build_model(config)  # first: bad option values fail before any data is read
        start_importing_optimizer_machinery()  # while the data loads (build.py says why)
        started = time.perf_counter()
        self.data: TrainingData = self._prepare_data()
        # where the time of a run goes (results.json); the training loop's own time is in metrics.csv
        self.timings = {"data_s": time.perf_counter() - started}
        started = time.perf_counter()
        self.stream = BatchStream(
            self.data.train_images.to(self.device),  # uint8: 150 MB for all 50,000 images
            self.data.train_labels.to(self.device),
            augmentation_of(config),
            config.batch_size,
            derive_seed(config.seed, BATCH_STREAM),
            self.dist.rank,
            self.dist.world_size,
            config.alternate_flips,
        )
        if config.accumulate > self.stream.per_rank:
            raise ConfigError(f"accumulate: {config.accumulate} micro-batches of a {self.stream.per_rank}-image batch")
        self.steps_per_epoch = self.stream.steps_per_epoch
        self.total_steps = config.steps or max(1, round(config.epochs * self.steps_per_epoch))
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.schedule = build_schedule(config, self.total_steps, self.steps_per_epoch)

        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = model
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
        self.calibration: dict | None = None  # the temperature fitted on the validation split after the last epoch

    def _init_from_data(self, model: nn.Module) -> None:
        """Layers initialised from the training images (a patch-whitening stem), from a fixed sample."""
        stem = getattr(model, "stem", None)
        if hasattr(stem, "whiten_"):
            generator = torch.Generator().manual_seed(derive_seed(self.config.seed, WHITENING_SAMPLE))
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

    def save(self, name: str) -> Path:
        path = run_folder.checkpoint_path(self.run_dir, name)
        metadata = checkpoint_metadata(
            self.config,
            self.position,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            world_size=self.dist.world_size,
            lr=self.schedule(self.position.step),
            schedule_kind=self.schedule.kind,
            ema_weights=self.ema is not None,
            data_folder=self.data.folder,
            runtime=self.runtime,
        )
        if self.calibration is not None:
            metadata["calibration"] = self.calibration
        save_checkpoint(path, pack_state(self.model, self.ema, self.optimizer), metadata)
        return path

    def load(self, path: Path) -> None:
        """Restore everything needed to continue exactly where the checkpoint was written."""
        tensors, meta = load_checkpoint(path)
        if not meta:
            raise CheckpointError(f"{path} holds weights only, no training state to resume from")
        if meta["global_batch"] != self.config.batch_size or meta["total_steps"] != self.total_steps:
            raise CheckpointError(f"{path} was written for a different batch size or length of training")
        unpack_state(tensors, self.model, self.ema, self.optimizer, self.device)
        self.position = Position.from_metadata(meta)
        self.calibration = meta.get("calibration")
        self.history = [row for row in run_folder.read_metrics(self.run_dir) if row["epoch"] <= meta["epoch"]]

    # --- the loop ------------------------------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train to the end (or until a signal), then test. Returns the final results (rank 0)."""
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / "config.yaml")
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
        with distributed.threads_of_waiting_ranks(self.dist, self.device.type) as threads:
            self.timings["test_threads"] = threads
            return self._final_test()

    def _final_test(self) -> dict:
        return final_test(
            self.run_dir,
            self.config,
            self.data,
            self.predict,
            runtime=self.runtime,
            ema_weights=self.ema is not None,
            history=self.history,
            timings=self.timings,
            calibration=self.calibration,
        )

    def _pause(self) -> dict:
        """Stop at an epoch boundary as configured (stop_after_epochs); the checkpoint is there to resume from."""
        if self.dist.is_main:
            self.save("last")
            say(
                f"stopped after {plural(self.position.epoch, 'epoch')} as asked (stop_after_epochs); "
                f"resume with: {self.resume_hint}",
                "lines",
            )
        distributed.barrier(self.dist)
        return {}

    def _announce(self) -> None:
        config = self.config
        processes = f", x{self.dist.world_size} processes" if self.dist.enabled else ""
        say(
            f"run {self.run_dir}: {config.model} on {len(self.data.train_labels):,} training images "
            f"({len(self.data.val_labels):,} validation), {plural(self.total_steps, 'step')} of {config.batch_size} "
            f"({plural(self.epochs, 'epoch')}); {self.runtime.describe()}{processes}",
            config.progress,
        )

    def crop_size(self, epoch: int) -> int:
        """Progressive resizing: `crop_size` pixels, then full images for the last `full_size_epochs` epochs."""
        return 32 if epoch >= self.epochs - self.config.full_size_epochs else self.config.crop_size

    def _epoch_steps(self, epoch: int) -> int:
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    def _train_epoch(self, stop: StopSignal, progress: RunProgress) -> None:
        position = self.position
        epoch, steps = position.epoch, self._epoch_steps(position.epoch)
        plan = self.stream.plan(epoch, position.epoch_step, self.crop_size(epoch))
        progress.start_epoch(epoch + 1, steps, position.epoch_step)
        # device counters: read (a host sync on a GPU) only when progress is shown and at the end of the epoch
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        count, first_step = 0, position.epoch_step
        started = time.perf_counter()
        self.train_model.train()
        while position.epoch_step < steps:
            images, labels = self.stream.batch(plan, position.epoch_step - first_step)
            loss, hits = self._step(images, labels)
            loss_sum += loss.double() * len(labels)
            correct += hits
            count += len(labels)
            position.step += 1
            position.epoch_step += 1
            elapsed = time.perf_counter() - started

            def stats(ls=loss_sum, hs=correct, n=count, t=elapsed):
                return ls.item() / n, hs.item() / n, n * self.dist.world_size / max(t, 1e-9)

            progress.update(position.step, stats)
            if self.callbacks:
                paused = time.perf_counter()
                for callback in self.callbacks:
                    callback.on_step(self)
                started += time.perf_counter() - paused  # hooks do not count as training time
            if self._should_stop(stop, position.epoch_step == steps):
                self._add_to_epoch_totals(loss_sum, correct, count, time.perf_counter() - started)
                progress.end_epoch("")
                self._interrupt(stop.received or signal.SIGTERM)
        self._add_to_epoch_totals(loss_sum, correct, count, time.perf_counter() - started)

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
            group["lr"] = lr * group["lr_scale"]
        self.optimizer.zero_grad(set_to_none=True)
        chunks = list(zip(images.chunk(self.config.accumulate), labels.chunk(self.config.accumulate), strict=True))
        loss_total = torch.zeros((), device=self.device)
        hits = torch.zeros((), dtype=torch.int64, device=self.device)
        for index, (x, y) in enumerate(chunks):
            last = index == len(chunks) - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.train_model.no_sync()
            with sync:
                with self.runtime.autocast():
                    logits = self.train_model(x)  # with AugMix's JSD: each image's clean view and two mixes
                    loss, logits = training_loss(logits, y, self.config.label_smoothing, self.stream.augmentation.views)
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
        last = run_folder.checkpoint_path(self.run_dir)
        kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint was written"
        raise TrainingError(
            f"loss became {loss.item()} at step {self.position.step + 1} (epoch {self.position.epoch + 1}); "
            f"training stopped and {kept}. Try a lower lr, or grad_clip."
        )

    def _add_to_epoch_totals(self, loss_sum: torch.Tensor, correct: torch.Tensor, count: int, seconds: float) -> None:
        totals = torch.stack(
            [loss_sum, correct.double(), torch.tensor(float(count), dtype=torch.float64, device=self.device)]
        )
        totals = distributed.all_reduce_sum(totals, self.dist).cpu()
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
        row = position.totals.row(epoch, position.step, self.schedule(position.step - 1))
        has_val = self.dist.is_main and len(self.data.val_labels)
        validate = has_val and (epoch % self.config.eval_every == 0 or last_epoch)
        improved = validate and self._validate(row, calibrate=last_epoch) > position.best_val_acc
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

    def _validate(self, row: dict, calibrate: bool = False) -> float:
        """Fill the row's validation columns (single view); returns the validation accuracy. `calibrate` (the last
        epoch) also fits the temperature on the run's TTA views of the same pass (what evaluate and predict use), kept
        in the final checkpoint so every later use of these weights reports honest probabilities."""
        started = time.perf_counter()
        images, labels = self.data.val_images, self.data.val_labels
        tta_logits, logits = predict_logits_and_single_view(
            self.eval_model, images, tta=self.config.tta if calibrate else 0, **self._predict_options()
        )
        row["val_loss"] = F.cross_entropy(logits, labels).item()
        row["val_acc"] = (logits.argmax(1) == labels).double().mean().item()
        row["val_seconds"] = time.perf_counter() - started
        if calibrate:
            self.calibration = temperature_calibration(tta_logits, labels, self.config.tta)
        return row["val_acc"]

    @property
    def temperature(self) -> float:
        return temperature_of(self.calibration)

    def predict(self, images: torch.Tensor, tta: int) -> torch.Tensor:
        return predict_logits(self.eval_model, images, tta=tta, **self._predict_options())

    def _predict_options(self) -> dict:
        return dict(
            batch_size=self.config.eval_batch_size,
            runtime=self.runtime,
            channels_last=self.config.channels_last,
            tta_share=self.config.tta_share,
        )

    def train_seconds(self) -> float:
        return run_folder.training_seconds(self.history)
