"""A training run's lifecycle around the loop: the run folder claimed (or resumed), locked while the run writes there,
cleared by --overwrite, given up when it never got a checkpoint; the runtime decided once, before anything is
written, and handed to the Trainer; a finished run's stored results."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import load_checkpoint, recorded_precision
from resnet_cifar.config import RUNTIME_KEYS, TrainConfig, apply_overrides, config_from_record, read_yaml, validate
from resnet_cifar.errors import ConfigError
from resnet_cifar.runtime import Runtime, choose_runtime, resolve_device
from resnet_cifar.train import distributed
from resnet_cifar.train.loop import Trainer


def new_run_dir(config: TrainConfig, overwrite: bool = False) -> Path:
    """output_dir/name, with -2, -3, ... appended rather than overwriting an existing run (unless asked); created."""
    return run_folder.claim_new(Path(config.output_dir) / (config.name or config.model), overwrite)


def resume_config(run_dir: Path, overrides: dict) -> tuple[TrainConfig, str | None]:
    """The run's own configuration with the runtime keys of `overrides` applied, and the precision it computes in.
    A pause (`stop_after_epochs`) belongs to the command that asked for it: resuming continues unless asked again."""
    if not run_dir.is_dir():
        raise ConfigError(f"--resume: no run folder at {run_dir}")
    checkpoint = run_folder.checkpoint_path(run_dir)
    if not checkpoint.is_file():
        raise ConfigError(run_folder.missing_checkpoint_advice(run_dir))
    _, metadata = load_checkpoint(checkpoint)
    if not metadata:
        raise ConfigError(f"{checkpoint} has no training state")
    config = dataclasses.replace(config_from_record(metadata["config"]), stop_after_epochs=None)
    check_config_file(run_dir, config)
    run_folder.read_metrics(run_dir)  # a damaged metrics.csv is said now, before any work
    changed = {k: v for k, v in overrides.items() if getattr(config, k.replace("-", "_")) != v}
    if changed.get("precision") == "auto":  # the flag's default: the run keeps the precision it computes in
        del changed["precision"]
    fixed = sorted(k for k in changed if k.replace("-", "_") not in RUNTIME_KEYS)
    if fixed:
        why = " (the run computes in the precision it started in, for an exact resume)" if "precision" in fixed else ""
        raise ConfigError(f"cannot change {', '.join(fixed)} when resuming{why} (only {', '.join(RUNTIME_KEYS)})")
    return validate(apply_overrides(config, changed)), recorded_precision(metadata)


def check_config_file(run_dir: Path, recorded: TrainConfig) -> None:
    """A run resumes with the configuration its checkpoint records. RUN/config.yaml is that configuration's readable
    copy, written again on resume: when it was deleted, say so; when it was edited, refuse (naming the keys), so an
    edit is never thrown away without a word."""
    path = run_dir / run_folder.CONFIG
    if not path.is_file():
        print(f"{path} was missing: written again from the checkpoint's configuration", file=sys.stderr)
        return
    try:
        edited = config_from_record(read_yaml(path)).to_dict()
    except ConfigError as error:
        raise ConfigError(f"{path} no longer reads as a configuration ({error}); restore or delete it") from None
    kept = recorded.to_dict()
    changed = [key for key in kept if key not in (*RUNTIME_KEYS, "stop_after_epochs") and edited[key] != kept[key]]
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


def decide_runtime(config: TrainConfig, info: distributed.DistInfo, recorded: str | None) -> Runtime:
    """The run's device and precision, decided once before anything is written, by rank 0 for every rank: a new run's
    as its config asks, a resumed run's as it recorded."""
    if recorded is None:
        runtime = choose_runtime(config.device, config.precision, config.threads)
    else:
        runtime = choose_runtime(config.device, recorded, config.threads, given="as the run recorded")
    return distributed.agree_on_runtime(runtime, info)


def run_training(
    config: TrainConfig, *, resume: Path | None = None, recorded: str | None = None, overwrite: bool = False
) -> dict:
    """Train (or resume, computing in the `recorded` precision) and return the test results; raises Interrupted
    after a signal (checkpoint written).

    The run folder is locked while the run writes there (rank 0); --overwrite first removes the old run's files, so
    results and weights never come from two different runs. A new run that fails before its first checkpoint
    removes the folder it claimed, so a retry gets the same name (and `make train` the folder the README names)."""
    info = distributed.init_distributed(resolve_device(config.device).type)
    lock, claimed = None, None
    try:
        if info.enabled and config.device in ("auto", "cuda") and resolve_device(config.device).type == "cuda":
            config = dataclasses.replace(config, device=f"cuda:{info.local_rank}")
        runtime = decide_runtime(config, info, recorded)
        run_dir = Path()
        if info.is_main:
            run_dir, lock = _claim(config, resume, overwrite)
            claimed = None if resume else run_dir
        run_dir = Path(_broadcast_text(str(run_dir), info)) if info.enabled else run_dir
        trainer = Trainer(config, run_dir, runtime, dist=info)
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


def _claim(config: TrainConfig, resume: Path | None, overwrite: bool) -> tuple[Path, run_folder.RunLock]:
    """The run's folder, locked: the resumed one, or a new one (emptied of an old run's files with --overwrite). A
    folder in use by another run is refused before anything of it is touched."""
    run_dir = Path(resume) if resume else new_run_dir(config, overwrite)
    lock = run_folder.RunLock(run_dir).acquire()
    if overwrite and not resume:
        run_folder.clear_run(run_dir)
    else:
        run_folder.remove_orphaned_temporaries(run_dir)
    return run_dir, lock


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
