"""The process's memory policy (resnet_cifar.allocator): each branch with faked facts, and on glibc the real effect."""

import os
import platform
import subprocess
import sys

import pytest

from resnet_cifar import allocator

# Allocate, touch and free a 64 MiB buffer four times; print the fewest page faults of rounds 2-4 (one round may
# land the buffer beside memory the interpreter took meanwhile, so one round alone is not the measure).
REUSE = """
import resource, torch
from resnet_cifar.allocator import keep_freed_memory
print(keep_freed_memory())
faults = []
for round_ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = torch.ones(16 * 2**20)  # 64 MiB of float32, every page touched
    del buffer
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[1:]))
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


def _faults_on_reuse(env: dict[str, str]) -> tuple[str, int]:
    result = subprocess.run([sys.executable, "-c", REUSE], capture_output=True, text=True, check=True, env=env)
    state, faults = result.stdout.split("\n")[:2]
    return state, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the policy acts on glibc only")
def test_on_glibc_a_freed_buffer_is_reused_without_page_faults():
    env = {key: value for key, value in os.environ.items() if key not in ("LD_PRELOAD", "RESNET_CIFAR_MALLOC")}
    kept, faults_kept = _faults_on_reuse(env)
    default, faults_default = _faults_on_reuse({**env, "RESNET_CIFAR_MALLOC": "system"})
    assert kept == "glibc, freed memory kept (no mmap, no trim)" and default.startswith("glibc defaults")
    pages = 64 * 2**20 // 4096
    assert faults_default > pages / 2  # mapped afresh: every page faulted in again
    assert faults_kept < pages / 20  # the heap's pages, reused
