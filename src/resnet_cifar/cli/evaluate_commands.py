"""`resnet-cifar evaluate` and `resnet-cifar plot`."""

from __future__ import annotations

import argparse
import os

from resnet_cifar.cli.options import add_data_dir, add_explain, add_runtime, add_weights, positive_int


def cmd_evaluate(args: argparse.Namespace) -> int:
    from resnet_cifar.errors import ConfigError
    from resnet_cifar.evaluate.evaluation import evaluate_source
    from resnet_cifar.evaluate.results import format_results

    if args.source and args.weights:
        raise ConfigError("give the run folder or weights file once: as the argument or as --weights, not both")
    source = args.source or args.weights
    if source is None:
        raise ConfigError("name a run folder or weights file to evaluate (e.g. outputs/default)")
    if args.weights in ("last", "best") and not os.path.exists(args.weights):
        raise ConfigError(
            f"--weights names a run folder or weights file; for a run's {args.weights} checkpoint use "
            f"--checkpoint {args.weights}"
        )
    if args.corruptions:
        return _corruption_benchmark(args, source)
    results = evaluate_source(source, **_test_options(args))
    print(format_results(results))
    print(f"results written to {results['path']}")
    print(f"test_accuracy={results['top1']:.4f}")
    return 0


def _test_options(args: argparse.Namespace) -> dict:
    """What evaluate's flags say about the weights and the test: shared by the plain test and the benchmark."""
    return {
        "which": args.checkpoint,
        "tta": args.tta,
        "data_dir": args.data_dir,
        "download": not args.no_download,
        "model_name": args.model,
        "model_options": args.model_options,
        "batch_size": args.batch_size,
        "device": args.device,
        "bf16": args.bf16,
        "output_dir": args.output_dir,
    }


def _corruption_benchmark(args: argparse.Namespace, source: str) -> int:
    from resnet_cifar.evaluate.evaluation import evaluate_corruptions
    from resnet_cifar.evaluate.robustness import format_report, parse_corruptions

    report, path, picture = evaluate_corruptions(
        source,
        corruptions=parse_corruptions(args.corruptions),
        images=args.corruption_images,
        seed=args.corruption_seed,
        split=args.corruption_split,
        **_test_options(args),
    )
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
    parser.add_argument(
        "--tta",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="test-time augmentation: 0 none, 1 flip, 2 flip + translate (default: the run's)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="images per forward pass (default: the run's)"
    )
    parser.add_argument(
        "--output-dir",
        default="outputs",
        help="where the results of a weights file outside a run folder go (a run's results go into the run folder)",
    )
    parser.add_argument(
        "--corruptions",
        default=None,
        metavar="all|NAME,...",
        help="instead: the corruption benchmark (14 CIFAR-10-C corruptions x 5 severities; all, or names)",
    )
    parser.add_argument(
        "--corruption-images", type=positive_int, default=None, help="a seeded sample of the images (default: all)"
    )
    parser.add_argument("--corruption-seed", type=int, default=0, help="seed of the corruptions and the sample")
    parser.add_argument(
        "--corruption-split",
        choices=("test", "val"),
        default="test",
        help="the test set, or the weights' own validation split (to tune robust recipes on; default test)",
    )
    add_runtime(parser)
    add_data_dir(parser)
    parser.set_defaults(func=cmd_evaluate)


def cmd_plot(args: argparse.Namespace) -> int:
    from resnet_cifar.evaluate.evaluation import plot_run

    for path in plot_run(
        args.run,
        data_dir=args.data_dir,
        download=not args.no_download,
        device=args.device,
        bf16=args.bf16,
        output_dir=args.output_dir,
        explain=args.explain,
        cam_layer=args.cam_layer,
    ):
        print(f"wrote {path}")
    return 0


def _plot_parser(sub) -> None:
    parser = sub.add_parser("plot", help="(re)write inference.png, curves.png and confusion_matrix.png of a run")
    parser.add_argument("run", help="run folder, or a weights file outside one (shipped, imported)")
    parser.add_argument(
        "--output-dir", default="outputs", help="where a weights file's pictures go (<output-dir>/<stem>-pictures/)"
    )
    add_explain(parser, "--explain", action="store_true", help="also inference_cam.png: class-activation maps")
    add_runtime(parser)
    add_data_dir(parser)
    parser.set_defaults(func=cmd_plot)


def register(sub) -> None:
    """Add this module's subcommands to the `resnet-cifar` parser."""
    _evaluate_parser(sub)
    _plot_parser(sub)
