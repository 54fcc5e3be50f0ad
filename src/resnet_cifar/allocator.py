"""Keep freed memory inside the process, so a training step does not map, fault in and zero its big tensors again
every step (glibc serves large allocations with a fresh `mmap` and returns them at `free`; with mmap off and no
trimming the heap reuses what it held, as tcmalloc does). Set once per process by the command line, recorded with
every run (`Runtime.as_dict`); `RESNET_CIFAR_MALLOC=system` keeps glibc's defaults, other allocators are left alone."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform

ENV = "RESNET_CIFAR_MALLOC"
# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
KEEP_UP_TO = 2**31 - 1  # mallopt takes an int: trim only when ~2 GiB are free at the heap's top
TOP_PAD = 64 * 2**20  # grow the heap 64 MiB at a time, not one allocation's size at a time

_state: str | None = None


def keep_freed_memory(environ: dict[str, str] | None = None, libc: str | None = None) -> str:
    """Apply the policy once (later calls return the first answer) and say what it is, for the run's record.

    `environ` and `libc` (the C library's name, as `platform.libc_ver` gives it) stand in for the process's in
    tests."""
    global _state
    if _state is None:
        _state = _apply(os.environ if environ is None else environ, platform.libc_ver()[0] if libc is None else libc)
    return _state


def return_freed_memory() -> None:
    """Hand memory freed inside the process back to the system now (glibc's malloc_trim; elsewhere nothing): what a
    long-running server does after a burst, so that it settles back near its baseline."""
    if platform.libc_ver()[0] == "glibc":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)


def allocator_state() -> str:
    """What `keep_freed_memory` did in this process (`not set` when the entry point did not call it: a library user)."""
    return _state or "not set"


def _apply(environ, libc: str) -> str:
    if environ.get(ENV, "").strip().lower() == "system":
        return f"{libc or 'C library'} defaults ({ENV}=system)"
    preloaded = environ.get("LD_PRELOAD", "")
    if any(name in preloaded for name in ("tcmalloc", "jemalloc", "mimalloc")):
        return f"preloaded ({os.path.basename(preloaded.split(':')[0])})"
    if libc != "glibc":
        return f"{libc or 'C library'} defaults (not glibc)"
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    done = all(mallopt(param, value) == 1 for param, value in _GLIBC_SETTINGS)
    return "glibc, freed memory kept (no mmap, no trim)" if done else "glibc defaults (mallopt refused)"


_GLIBC_SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, KEEP_UP_TO), (M_TOP_PAD, TOP_PAD))
