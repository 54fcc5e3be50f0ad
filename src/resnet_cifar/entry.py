"""The `resnet-cifar` command's first lines: Ctrl-C at any moment, even while the modules load, ends the command
with one line and exit code 130, never a traceback (resnet_cifar.interrupts)."""

from __future__ import annotations

import sys

from resnet_cifar.interrupts import interrupted, raise_from_now_on, remember_only


def _stopped() -> int:
    print("resnet-cifar: interrupted", file=sys.stderr)
    return 130


def main() -> int:
    remember_only()
    from resnet_cifar import cli

    args = cli.parse_command_line(cli.build_parser(), sys.argv[1:])  # --help and usage errors end here, at once
    import torch  # noqa: F401  (every command needs it: loaded while a Ctrl-C is only remembered)

    if interrupted():
        return _stopped()
    raise_from_now_on()
    try:
        return cli.run(args)
    except KeyboardInterrupt:
        return _stopped()
    except Exception:
        if interrupted():  # a library swallowed the KeyboardInterrupt and failed later because of it
            return _stopped()
        raise


if __name__ == "__main__":
    sys.exit(main())
