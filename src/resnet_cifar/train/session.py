"""Start or resume a training run: pick the run folder, set up distribution, run the Trainer."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import load_checkpoint, recorded_precision
from resnet_cifar.config import TrainConfig, apply_overrides, read_yaml, validate
from resnet_cifar.errors import ConfigError
from resnet_cifar.runtime import choose_runtime, resolve_device
from resnet_cifar.train import distributed
from resnet_cifar.train.loop import Trainer

# Keys that may change when resuming, because they change where and how fast the computation runs, or its rounding
# (micro-batches), not what it computes. The precision is not among them: it was decided when the run started and is
# recorded in its config, so a resumed run computes in the same one.
RUNTIME_KEYS = (
    "threads",
    "device",
    "accumulate",
    "progress",
    "data_dir",
    "download",
    "compile",
    "plots",
    "stop_after_epochs",
)


def new_run_dir(config: TrainConfig, overwrite: bool = False) -> Path:
    """output_dir/name, with -2, -3, ... appended rather than overwriting an existing run (unless asked); created."""
    return run_folder.claim_new(Path(config.output_dir) / (config.name or config.model), overwrite)


def resume_config(run_dir: Path, overrides: dict) -> TrainConfig:
    """The run's own configuration, with the runtime keys of `overrides` applied. A pause (`stop_after_epochs`)
    belongs to the command that asked for it, not to the run: resuming continues unless asked to pause again."""
    if not run_dir.is_dir():
        raise ConfigError(f"--resume: no run folder at {run_dir}")
    if not run_folder.checkpoint_path(run_dir).is_file():
        raise ConfigError(
            f"--resume: {run_dir} has no checkpoint yet (the run stopped before writing its first one); "
            "start it again with the same command and --overwrite"
        )
    _, metadata = load_checkpoint(run_folder.checkpoint_path(run_dir))
    if not metadata:
        raise ConfigError(f"{run_folder.checkpoint_path(run_dir)} has no training state")
    recorded = {**metadata["config"], "stop_after_epochs": None, "bf16": bool(recorded_precision(metadata))}
    config = apply_overrides(TrainConfig(), recorded)
    check_config_file(run_dir, config)
    if overrides.get("bf16") == "auto":  # the default of the flag: keep the recorded precision
        overrides = {k: v for k, v in overrides.items() if k != "bf16"}
    changed = {k: v for k, v in overrides.items() if getattr(config, k.replace("-", "_")) != v}
    fixed = sorted(k for k in changed if k.replace("-", "_") not in RUNTIME_KEYS)
    if fixed:
        why = " (the run computes in the precision it started in, for an exact resume)" if "bf16" in fixed else ""
        raise ConfigError(f"cannot change {', '.join(fixed)} when resuming{why} (only {', '.join(RUNTIME_KEYS)})")
    return validate(apply_overrides(config, changed))


def check_config_file(run_dir: Path, recorded: TrainConfig) -> None:
    """A run resumes with the configuration its checkpoint records. RUN/config.yaml is that configuration's readable
    copy, written again on resume: when it was deleted, say so; when it was edited, refuse (naming the keys), so an
    edit is never thrown away without a word."""
    path = run_dir / run_folder.CONFIG
    if not path.is_file():
        print(f"{path} was missing: written again from the checkpoint's configuration", file=sys.stderr)
        return
    try:
        edited = apply_overrides(TrainConfig(), read_yaml(path)).to_dict()
    except ConfigError as error:
        raise ConfigError(f"{path} no longer reads as a configuration ({error}); restore or delete it") from None
    kept = recorded.to_dict()
    changed = [
        key for key in kept if key not in RUNTIME_KEYS and key != "stop_after_epochs" and edited[key] != kept[key]
    ]
    if changed:
        shown = ", ".join(
            f"{key} ({edited[key]!r} in the file, {kept[key]!r} in the checkpoint)" for key in changed[:4]
        )
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ConfigError(
            f"{path} was edited: {shown}{more}. A run resumes with the configuration it started with; undo the edit "
            "(or delete the file to have it written again), or start a new run with the new settings"
        )


_KEPT_UNTIL_EXIT: list = []


def run_training(config: TrainConfig, *, resume: Path | None = None, overwrite: bool = False) -> dict:
    """Train (or resume) and return the test results; raises Interrupted after a signal (checkpoint written).

    The run folder is locked while the run writes there (rank 0); --overwrite first removes the old run's files, so
    results and weights never come from two different runs. A new run that fails before its first checkpoint
    removes the folder it claimed, so a retry gets the same name (and `make train` the folder the README names)."""
    info = distributed.init_distributed(resolve_device(config.device).type)
    lock, claimed = None, None
    try:
        if info.enabled and config.device in ("auto", "cuda") and resolve_device(config.device).type == "cuda":
            config = dataclasses.replace(config, device=f"cuda:{info.local_rank}")
        # decided once, before anything is written, and by rank 0 for every rank
        given = "as the run recorded" if resume else "as asked"
        runtime = choose_runtime(config.device, config.bf16, config.threads, given=given)
        runtime = distributed.agree_on_runtime(runtime, info)
        if info.is_main:
            run_dir = Path(resume) if resume else new_run_dir(config, overwrite)
            held = run_folder.RunLock(run_dir)
            held.acquire()  # a folder in use by another run is refused here, before anything of it is touched
            lock, claimed = held, None if resume else run_dir
            if overwrite and not resume:
                for path in run_folder.run_files(run_dir):
                    path.unlink()
        else:
            run_dir = Path()
        if info.enabled:  # every rank must use rank 0's folder
            run_dir = Path(_broadcast_text(str(run_dir), info))
        trainer = Trainer(config, run_dir, info, runtime=runtime)
        if info.enabled:  # freed only at process exit: see cli._exit_without_teardown
            _KEPT_UNTIL_EXIT.append(trainer)
        if resume:
            trainer.load(run_folder.checkpoint_path(run_dir))
            finished = finished_results(trainer)
            if finished is not None:
                return finished
        return trainer.fit()
    except BaseException:
        if lock is not None:
            lock.release()
            lock = None
        if claimed is not None and not run_folder.checkpoint_path(claimed).exists():
            run_folder.discard_unstarted(claimed)
        raise
    finally:
        if lock is not None:
            lock.release()
        distributed.shutdown(info)


def finished_results(trainer: Trainer) -> dict | None:
    """The stored results of a run that has already trained to the end and been tested (None otherwise): resuming
    it reports them instead of spending a test evaluation on the same weights again."""
    if trainer.position.step < trainer.total_steps:
        return None
    path = trainer.run_dir / run_folder.RESULTS
    if not path.is_file():
        return None  # trained but not tested (stopped during the test, or test_at_end off): fit() tests it
    if trainer.dist.is_main:
        print(f"{trainer.run_dir} has finished all {trainer.total_steps:,} steps; its results are in {path}")
    return json.loads(path.read_text())


def _broadcast_text(text: str, info: distributed.DistInfo) -> str:
    import torch.distributed as dist

    holder = [text]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def print_final_line(results: dict) -> None:
    if results:
        print(f"test_accuracy={results['top1']:.4f}", flush=True)
        sys.stdout.flush()
