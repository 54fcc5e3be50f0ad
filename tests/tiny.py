"""The tiny run the tests share: a small fastnet on a 1,000-image real subset, fp32 on the CPU, so that runs can be
compared bit for bit on any machine kind. `tiny_config()` for the Python API, `tiny_flags()` for the command line."""

import os
import signal

import yaml

from resnet_cifar.config import TrainConfig, load_config
from resnet_cifar.runtime import choose_runtime
from resnet_cifar.train.loop import Callback, Trainer

TINY_NET = {"widths": [16, 32, 64], "blocks": [1, 0, 1], "stem_width": 16}
TINY = {
    "model": "fastnet",
    "model_options": TINY_NET,
    "train_size": 1000,
    "val_size": 500,
    "batch_size": 100,
    "epochs": 3,
    "lr": 0.2,
    "label_smoothing": 0.1,
    "progress": "none",
    "plots": False,
    "test_at_end": False,
    "threads": 2,
    "precision": "fp32",  # fp32 on every machine kind (bf16 is tested where it is the point)
    "device": "cpu",  # bit-exact comparisons need the CPU's kernels
}


def tiny_config(**changes) -> TrainConfig:
    return load_config(None, {**TINY, **changes})


def make_trainer(config: TrainConfig, run_dir, **options) -> Trainer:
    """A Trainer for `config` in `run_dir`, its runtime decided as `resnet-cifar train` decides it."""
    return Trainer(config, run_dir, choose_runtime(config.device, config.precision, config.threads), **options)


def tiny_flags(**changes) -> list[str]:
    """`resnet-cifar train` flags for the tiny run with `changes` (booleans become --key / --no-key)."""
    flags = []
    for key, value in {**TINY, **changes}.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, dict):
            flags += [flag, yaml.safe_dump(value, default_flow_style=True).strip()]
        else:
            flags += [flag, str(value)]
    return flags


class StopAt(Callback):
    """Sends this process SIGINT after `step` steps, as a user pressing Ctrl-C would."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, trainer):
        if trainer.position.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


# A smaller run still: 4 steps on 100 images, then the test and the pictures (what the command-line tests share).
SMALL_RUN = {
    "model_options": {"widths": [8, 16, 32], "blocks": [1, 0, 1], "stem_width": 8},
    "train_size": 100,
    "val_size": 100,
    "batch_size": 50,
    "epochs": 2,
    "tta": 0,
    "eval_batch_size": 2000,
}
SMALL_FLAGS = tiny_flags(**SMALL_RUN, plots=True, test_at_end=True)
