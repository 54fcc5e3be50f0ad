"""`resnet-cifar train`: one flag per configuration field, resume, and the process around a run."""

from __future__ import annotations

import argparse
import sys


def _stop_with_parent() -> None:
    """If the parent process dies (e.g. `make train` is killed with SIGKILL), get SIGTERM, which checkpoints and
    stops training, instead of running on as an orphan. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from resnet_cifar.config import flag_overrides, load_config
    from resnet_cifar.errors import ConfigError
    from resnet_cifar.train.session import print_final_line, resume_config, run_training

    _stop_with_parent()
    overrides = flag_overrides(args)
    if args.resume and args.config:
        raise ConfigError(
            "--resume continues a run with its own configuration (RUN/config.yaml); drop --config "
            "(flags that only change where or how fast it runs, such as --device or --threads, may be given)"
        )
    recorded = None
    if args.resume:
        config, recorded = resume_config(Path(args.resume), overrides)
    else:
        config = load_config(args.config, overrides)
    # a signal raises Interrupted (checkpoint written): the entry point exits with 128 + its number
    resume = Path(args.resume) if args.resume else None
    results = run_training(config, resume=resume, recorded=recorded, overwrite=args.overwrite)
    print_final_line(results)
    return 0


def register(sub) -> None:
    """Add `train` to the `resnet-cifar` parser."""
    from resnet_cifar.config import add_config_flags

    parser = sub.add_parser(
        "train",
        help="train a model (config file < flags); prints test_accuracy= last",
        description="Train on CIFAR-10. Defaults < --config YAML < flags. The resolved config, metrics.csv, "
        "checkpoints and pictures go to OUTPUT_DIR/NAME.",
    )
    parser.add_argument("--config", default=None, help="YAML file of config keys (see configs/)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run exactly where it stopped")
    parser.add_argument("--overwrite", action="store_true", help="reuse the run folder name instead of adding -2")
    add_config_flags(parser)
    parser.set_defaults(func=cmd_train)
