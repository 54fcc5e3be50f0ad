"""The `resnet-cifar` command: one entry point, one subcommand per job. Heavy modules are imported inside each command,
so `--help` answers before PyTorch loads; every error a user can cause is printed as one line, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from resnet_cifar import __version__
from resnet_cifar.allocator import keep_freed_memory
from resnet_cifar.cli import (
    evaluate_commands,
    experiment_commands,
    info_commands,
    serve_command,
    train_commands,
    use_commands,
)
from resnet_cifar.errors import Interrupted, ResnetCifarError

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean for unknown flags (`--learning-rate` -> `--lr`), for every subcommand."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            hints = [hint for word in message.split(":", 1)[1].split() if (hint := self._suggest(word))]
            if hints:
                message += "; did you mean " + ", ".join(hints) + "?"
        super().error(message)

    def _suggest(self, word: str) -> str | None:
        if not word.startswith("--"):
            return None
        import difflib

        from resnet_cifar.config import ALIASES

        flag = word.split("=", 1)[0]
        alias = ALIASES.get(flag[2:].replace("-", "_"))
        if alias:
            return "--" + alias.replace("_", "-")
        close = difflib.get_close_matches(flag, sorted(self._all_flags()), n=1)
        # the flag itself exists, of another subcommand: "did you mean" it would point nowhere
        return close[0] if close and close[0] != flag else None

    def _all_flags(self) -> set[str]:
        flags = set()
        for action in self._actions:
            flags.update(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags |= sub._all_flags()
        return flags


# --- entry point -------------------------------------------------------------------------------------------------

SUBCOMMANDS = (
    train_commands, evaluate_commands, use_commands, serve_command, experiment_commands, info_commands,
)  # each module's register() adds its subcommands


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="resnet-cifar", description="Residual Networks on CIFAR-10: train, evaluate, show, measure.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def parse_command_line(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """parse_args, except that an unknown flag is reported by the subcommand it was given to, so the did-you-mean
    names a flag of that subcommand (`train --foo` is not told about `export --force`)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        chosen = parser
        while subparsers := [a for a in chosen._actions if isinstance(a, argparse._SubParsersAction)]:
            chosen = subparsers[0].choices[getattr(args, subparsers[0].dest)]
        chosen.error("unrecognized arguments: " + " ".join(unknown))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_command_line(build_parser(), argv))


def run(args: argparse.Namespace) -> int:
    """Run the parsed command: alone, or as a torchrun worker (WORLD_SIZE > 1)."""
    if world_size() <= 1:
        return _run(args)
    try:
        code = _run(args)
    except BaseException:  # a bug: show it, then still exit without teardown
        import traceback

        traceback.print_exc()
        code = 1
    _exit_without_teardown(code)


def world_size() -> int:
    """torchrun's WORLD_SIZE (1 when not under torchrun); a value that is not a number is the user's error."""
    text = os.environ.get("WORLD_SIZE", "1")
    if not text.strip().isdigit():
        print(
            f"resnet-cifar: error: WORLD_SIZE must be a whole number (torchrun sets it), got {text!r}", file=sys.stderr
        )
        raise SystemExit(EXIT_USAGE)
    return int(text)


def _run(args: argparse.Namespace) -> int:
    # the memory policy, set before any tensor exists: computing commands keep freed memory for their next step
    # (resnet_cifar.allocator); a long-running server hands it back instead
    if not getattr(args, "returns_memory", False):
        keep_freed_memory()
    return run_reporting_errors(lambda: args.func(args))


def run_reporting_errors(command: Callable[[], int | None]) -> int:
    """Run `command` as the CLI runs a subcommand: the user's errors as one line (exit 2), a signal as 128 + its
    number, a refusal of the file system as one line (exit 1)."""
    try:
        return command() or 0
    except Interrupted as stop:  # the loop has written its checkpoint and said how to continue
        return 128 + int(stop.signum)
    except ResnetCifarError as error:
        print(f"resnet-cifar: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resnet-cifar: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # the file system said no (permissions, a full disk, a path that cannot exist)
        where = f": {error.filename}" if error.filename else ""
        print(f"resnet-cifar: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1


def _exit_without_teardown(code: int) -> None:
    """End a torchrun worker without running destructors. Freeing DDP's reducer drops the last reference to the gloo
    process group, whose destructor joins its worker thread while holding the GIL; if that thread is still freeing a
    finished collective's tensors it needs the GIL too, and the process hangs for ever under load (the family of
    pytorch#75097). Everything has been written (checkpoints are fsynced and renamed): only the streams are flushed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
