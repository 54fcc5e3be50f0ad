"""Run `resnet-cifar` with a real crash injected halfway through the Nth atomic file write.

Usage: python crash_shim.py N train ...   The process writes half of the data to the temporary file of write N
(checkpoints, metrics.csv, config files all go through the same atomic writer) and then SIGKILLs itself, exactly
like a power cut or an OOM kill in the middle of saving. Used by test_reliability.py; not part of the package.
"""

import os
import signal
import sys

from resnet_cifar import checkpoint, files


def main() -> None:
    crash_at = int(sys.argv[1])
    original = files.atomic_write_bytes
    calls = 0

    def crashing_write(path, data):
        nonlocal calls
        calls += 1
        if calls == crash_at:
            temporary = path.with_name(f".{path.name}.crash.tmp")
            with open(temporary, "wb") as out:
                out.write(data[: len(data) // 2])
                out.flush()
                os.fsync(out.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        original(path, data)

    import resnet_cifar.evaluate.results as report
    import resnet_cifar.run_folder as run_folder

    for module in (files, checkpoint, run_folder, report):  # the modules that imported the name directly
        module.atomic_write_bytes = crashing_write
    from resnet_cifar.cli import main as cli_main

    sys.exit(cli_main(sys.argv[2:]))


if __name__ == "__main__":
    main()
