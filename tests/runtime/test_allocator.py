"""The process's memory policy (resnet_cifar.allocator): each branch with faked facts, and on glibc the real effect."""

import os
import platform
import subprocess
import sys

import pytest

from resnet_cifar import allocator

# malloc, touch and free a 64 MiB block eight times and print the page faults of rounds 2-8; then whether a tensor
# that size lies in the brk heap. Blocks go straight through the C library: a tensor's storage comes from
# posix_memalign, whose spare tail the tensor's own bookkeeping takes, so a freed storage's hole is a little too small
# for the next one until the heap has grown a few hundred MiB and settled (seen: ten rounds on a Zen 4) - true of the
# real training too, but not a fixed number of rounds to test.
REUSE = """
import ctypes, resource, torch
from resnet_cifar.allocator import keep_freed_memory
print(keep_freed_memory())
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
size = 64 * 2**20
faults = [0] * 9
for round_ in range(8):
    faults[round_] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)  # every page touched
    libc.free(block)
faults[8] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(faults[8] - faults[1])
tensor = torch.ones(size // 4)
heaps = [line.split()[0].split("-") for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
print(int(any(int(start, 16) <= tensor.data_ptr() < int(end, 16) for start, end in heaps)))
"""


def test_system_asked_for_keeps_the_c_librarys_defaults():
    assert allocator._apply({"RESNET_CIFAR_MALLOC": "system"}, "glibc") == "glibc defaults (RESNET_CIFAR_MALLOC=system)"


def test_a_preloaded_allocator_is_left_alone():
    state = allocator._apply({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"}, "glibc")
    assert state == "preloaded (libtcmalloc_minimal.so.4)"


def test_another_c_library_is_left_alone():
    assert allocator._apply({}, "") == "C library defaults (not glibc)"  # macOS, musl: libc_ver has no name
    assert allocator._apply({}, "musl") == "musl defaults (not glibc)"


def test_the_first_answer_is_kept_for_the_process(monkeypatch):
    monkeypatch.setattr(allocator, "_state", None)
    assert allocator.allocator_state() == "not set"
    first = allocator.keep_freed_memory({"RESNET_CIFAR_MALLOC": "system"}, "glibc")
    assert allocator.keep_freed_memory({}, "musl") == first == allocator.allocator_state()


def _faults_on_reuse(env: dict[str, str]) -> tuple[str, int, bool]:
    """The policy the child reports, the page faults of its rounds 2-8, whether a big tensor lay in the heap."""
    result = subprocess.run([sys.executable, "-c", REUSE], capture_output=True, text=True, check=True, env=env)
    state, faults, in_heap = result.stdout.strip().split("\n")
    return state, int(faults), in_heap == "1"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the policy acts on glibc only")
def test_on_glibc_a_freed_buffer_is_reused_without_page_faults():
    env = {key: value for key, value in os.environ.items() if key not in ("LD_PRELOAD", "RESNET_CIFAR_MALLOC")}
    kept, faults_kept, heap_kept = _faults_on_reuse(env)
    default, faults_default, heap_default = _faults_on_reuse({**env, "RESNET_CIFAR_MALLOC": "system"})
    assert kept == "glibc, freed memory kept (no mmap, no trim)" and default.startswith("glibc defaults")
    pages = 64 * 2**20 // 4096
    # glibc's defaults map a block this big afresh outside the heap and unmap it at free: every round faults every
    # page in again.
    assert not heap_default and faults_default > 6 * pages
    # Kept: blocks come from the heap and stay the process's, so only the first round faulted its pages in.
    assert heap_kept and faults_kept < pages / 20
