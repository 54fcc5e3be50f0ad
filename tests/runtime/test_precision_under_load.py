"""The precision decision does not bend under load: on a machine kept busy for real (a CPU-bound process per core and
one more, and a process holding and touching 1.5 GB), `precision: auto` resolves as it does on the idle machine.
Where the facts say native bf16 (an AVX-512 bf16 or AMX CPU) the veto probe really runs here, warmed up."""

from __future__ import annotations

import os
import subprocess
import sys
import time

DECIDE = (  # each decision from scratch: the facts and the probe forgotten in between
    "from resnet_cifar import runtime\n"
    "for _ in range({times}):\n"
    "    runtime.clear_caches()\n"
    "    print(runtime.choose_runtime('cpu', 'auto').precision)\n"
)
SPIN = "while True: pass"
HOG = (
    "import time\n"
    "block = bytearray(1536 * 2**20)\n"
    "while True:\n"
    "    for i in range(0, len(block), 4096):\n"
    "        block[i] = (block[i] + 1) % 256\n"
    "    time.sleep(0.01)\n"
)


def decisions(times: int) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", DECIDE.format(times=times)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_same_precision_on_a_busy_machine_as_on_an_idle_one():
    (idle,) = decisions(1)
    load = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range((os.cpu_count() or 1) + 1)]
    load.append(subprocess.Popen([sys.executable, "-c", HOG]))
    try:
        time.sleep(1.0)  # the load is under way
        busy = decisions(3)
    finally:
        for process in load:
            process.kill()
            process.wait()
    assert busy == [idle] * 3, f"idle: {idle}, busy: {busy}"
