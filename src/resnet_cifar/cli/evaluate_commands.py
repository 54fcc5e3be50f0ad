"""`resnet-cifar evaluate` and `resnet-cifar plot`."""

from __future__ import annotations

import argparse
import os

from resnet_cifar.cli.options import (
    add_data_dir,
    add_explain,
    add_output_dir,
    add_runtime,
    add_tta,
    add_weights,
    positive_int,
)
from resnet_cifar.run_folder import CHECKPOINTS


def cmd_evaluate(args: argparse.Namespace) -> int:
    from resnet_cifar.errors import ConfigError
    from resnet_cifar.evaluate.evaluation import evaluate_weights, weights_and_data
    from resnet_cifar.evaluate.results import format_results

    if args.source and args.weights:
        raise ConfigError("give the run folder or weights file once: as the argument or as --weights, not both")
    source = args.source or args.weights
    if source is None:
        raise ConfigError("name a run folder or weights file to evaluate (e.g. outputs/fast80)")
    if args.weights in CHECKPOINTS and not os.path.exists(args.weights):
        raise ConfigError(
            f"--weights names a run folder or weights file; for a run's {args.weights} checkpoint use "
            f"--checkpoint {args.weights}"
        )
    loaded, dataset = weights_and_data(
        source, args.checkpoint, data_dir=args.data_dir, download=not args.no_download, device=args.device,
        precision=args.precision, model_name=args.model, model_options=args.model_options,
    )
    if args.corruptions:
        return _corruption_benchmark(args, loaded, dataset)
    results = evaluate_weights(loaded, dataset, tta=args.tta, batch_size=args.batch_size, output_dir=args.output_dir)
    print(format_results(results))
    print(f"results written to {results['path']}")
    print(f"test_accuracy={results['top1']:.4f}")
    return 0


def _corruption_benchmark(args: argparse.Namespace, loaded, dataset) -> int:
    from pathlib import Path

    from resnet_cifar.evaluate.evaluation import corruption_benchmark
    from resnet_cifar.evaluate.robustness import format_report, parse_corruptions, write_report
    from resnet_cifar.viz.corruption_pictures import write_corruption_examples

    corruptions = parse_corruptions(args.corruptions)
    report, example = corruption_benchmark(
        loaded, dataset, corruptions=corruptions, images=args.corruption_images, seed=args.corruption_seed,
        tta=args.tta, batch_size=args.batch_size, split=args.corruption_split,
    )
    folder = loaded.run_dir if loaded.in_run else Path(args.output_dir)
    stem = ("corruptions" if loaded.in_run else f"{loaded.path.stem}-corruptions") + (
        "-val" if args.corruption_split == "val" else ""
    )
    path = write_report(report, folder / f"{stem}.json")
    picture = write_corruption_examples(example, folder / f"{stem}.png", corruptions, args.corruption_seed)
    print(format_report(report))
    print(f"report written to {path}; examples drawn in {picture}")
    print(f"mean_corruption_accuracy={report['mean_corruption_accuracy']:.4f}")
    return 0


def _evaluate_parser(sub) -> None:
    parser = sub.add_parser("evaluate", help="test-set accuracy, per-class accuracy and confusion matrix of a run")
    parser.add_argument(
        "source", nargs="?", default=None, metavar="RUN_OR_FILE", help="run folder or .safetensors file"
    )
    add_weights(parser, "(the same as the argument)")
    add_tta(parser, None, "default: the run's")
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="images per forward pass (default: the run's)"
    )
    add_output_dir(parser, "where the results of a weights file outside a run folder go (a run's go into it)")
    parser.add_argument(
        "--corruptions", default=None, metavar="all|NAME,...",
        help="instead: the corruption benchmark (14 CIFAR-10-C corruptions x 5 severities; all, or names)",
    )
    parser.add_argument(
        "--corruption-images", type=positive_int, default=None, help="a seeded sample of the images (default: all)"
    )
    parser.add_argument("--corruption-seed", type=int, default=0, help="seed of the corruptions and the sample")
    parser.add_argument(
        "--corruption-split", choices=("test", "val"), default="test",
        help="the test set, or the weights' own validation split (to tune robust recipes on; default test)",
    )
    add_runtime(parser)
    add_data_dir(parser)
    parser.set_defaults(func=cmd_evaluate)


def cmd_plot(args: argparse.Namespace) -> int:
    from resnet_cifar.viz.run_pictures import plot_run

    for path in plot_run(
        args.run, data_dir=args.data_dir, download=not args.no_download, device=args.device, precision=args.precision,
        output_dir=args.output_dir, explain=args.explain, cam_layer=args.cam_layer,
    ):
        print(f"wrote {path}")
    return 0


def _plot_parser(sub) -> None:
    parser = sub.add_parser("plot", help="(re)write inference.png, curves.png and confusion_matrix.png of a run")
    parser.add_argument("run", help="run folder, or a weights file outside one (shipped, imported)")
    add_output_dir(parser, "where a weights file's pictures go (<output-dir>/<stem>-pictures/)")
    add_explain(parser, "--explain", action="store_true", help="also inference_cam.png: class-activation maps")
    add_runtime(parser)
    add_data_dir(parser)
    parser.set_defaults(func=cmd_plot)


def register(sub) -> None:
    """Add this module's subcommands to the `resnet-cifar` parser."""
    _evaluate_parser(sub)
    _plot_parser(sub)
