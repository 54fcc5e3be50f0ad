import os
import subprocess
import threading
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Measurements made by the tests (tiny studies, trial benchmarks) never reach the published ledger; this process and
# every command it starts append to a scratch file instead.
os.environ["RESNET_CIFAR_LEDGER"] = str(
    Path(os.environ.get("TMPDIR", "/tmp")) / f"resnet-cifar-test-ledger-{os.getpid()}.jsonl"
)
SHARED = REPO.parent / "shared" / "data" / "cifar-10-batches-bin"


def rest_of_output(process: subprocess.Popen, timeout: float) -> str:
    """What a text-mode process still writes until it exits, read through the same buffered pipe as the lines read
    before (`communicate` with a timeout reads the raw pipe and loses what `readline` had buffered)."""
    rest: list[str] = []
    reader = threading.Thread(target=lambda: rest.append(process.stdout.read()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        process.kill()
        reader.join()
        raise AssertionError(f"{process.args} still running after {timeout} s")
    process.wait(timeout=timeout)
    return rest[0]


def real_data_dir() -> Path | None:
    """The real CIFAR-10 binary folder: $RESNET_CIFAR_DATA, else ../shared beside the repository."""
    candidate = Path(os.environ.get("RESNET_CIFAR_DATA") or SHARED)
    return candidate if (candidate / "data_batch_1.bin").is_file() else None


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    folder = real_data_dir()
    if folder is None:
        pytest.skip("real CIFAR-10 not available (set RESNET_CIFAR_DATA)")
    return folder


@pytest.fixture(scope="session")
def cifar_train(cifar_dir):
    from resnet_cifar.data import load_split

    return load_split(cifar_dir, "train")


@pytest.fixture(scope="session")
def cifar_test(cifar_dir):
    from resnet_cifar.data import load_split

    return load_split(cifar_dir, "test")


@pytest.fixture
def machine(monkeypatch):
    """`machine("avx2")` makes this test's process see that CPU kind (tests/machines.py: facts faked, code real);
    `machine.cuda("h100")` adds a GPU of that kind for decisions. The caches of the facts are cleared afterwards."""
    from machines import CPU_KINDS, CUDA_KINDS, fake_cpu, fake_cuda
    from resnet_cifar import runtime

    class Machine:
        facts = None  # the CPU kind in force

        def __call__(self, name: str):
            fake_cpu(monkeypatch, CPU_KINDS[name])
            self.facts = CPU_KINDS[name]
            return CPU_KINDS[name]

        def cuda(self, name: str, count: int = 1):
            fake_cuda(monkeypatch, CUDA_KINDS[name], count)
            return CUDA_KINDS[name]

    threads = torch.get_num_threads()  # the entry points under test set it from --threads
    yield Machine()
    monkeypatch.undo()
    runtime.clear_caches()
    torch.set_num_threads(threads)


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch) -> Path:
    """A fabricated dataset in the binary format (60 images per file, 6 of each class), its checksums injected."""
    from fakes import write_fake
    from resnet_cifar.data import checksums

    folder = tmp_path / "fake-cifar"
    table, _ = write_fake(folder, "binary", n=60)
    for file_name, check in table.items():
        monkeypatch.setitem(checksums.BINARY_FILES, file_name, check)
    return folder


@pytest.fixture(autouse=True)
def _no_parent_death_signal(monkeypatch):
    """`train` asks Linux for SIGTERM when its parent dies; not for the test process."""
    from resnet_cifar.cli import train_commands

    monkeypatch.setattr(train_commands, "_stop_with_parent", lambda: None)


@pytest.fixture(scope="module")
def finished_run(cifar_dir, tmp_path_factory):
    """A tiny run trained to the end, tested, with its pictures (tiny.SMALL_FLAGS)."""
    from commands import cli_code
    from resnet_cifar.cli import train_commands
    from tiny import SMALL_FLAGS

    out = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_commands, "_stop_with_parent", lambda: None)
        assert cli_code("train", *SMALL_FLAGS, "--data-dir", cifar_dir, "--output-dir", out, "--name", "done") == 0
    return out / "done"


def pytest_sessionfinish(session, exitstatus):
    Path(os.environ["RESNET_CIFAR_LEDGER"]).unlink(missing_ok=True)
