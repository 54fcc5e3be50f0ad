"""The README's generated parts must match what the code produces."""

import json
import re
from pathlib import Path

import pytest

from resnet_cifar.models import format_table, model_table
from resnet_cifar.models.summary import CACHE

README = Path(__file__).resolve().parents[1] / "README.md"


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_model_table_is_generated_not_typed():
    """The README's table and the one `resnet-cifar models` prints from the shipped file are both model_table()."""
    text = README.read_text()
    table = between(text, "<!-- models:start -->", "<!-- models:end -->")
    computed = model_table()
    assert table == format_table(computed), "regenerate with: resnet-cifar models"
    assert json.loads(CACHE.read_text()) == computed, "regenerate with: python -m resnet_cifar.models --write-cache"


def test_readme_gives_the_two_commands_and_they_are_the_makefiles():
    """The two commands a reader runs first are `make train` and `make test`, each a target of the Makefile that
    creates the environment first; every `make X` the README mentions exists; CI runs `make test`."""
    block = between(README.read_text(), "## The two commands\n\n```bash", "```")
    commands = [line.split("#")[0].split() for line in block.splitlines()]
    assert commands == [["make", "train"], ["make", "test"]]
    makefile = (README.parent / "Makefile").read_text()
    targets = dict(re.findall(r"^([a-z][\w-]*):(.*)$", makefile, flags=re.M))
    for _, target in commands:
        assert "$(BIN)/.installed" in targets[target], f"make {target} does not create the environment first"
    text = README.read_text()  # `make X` in prose, and `make X` at the start of a line in code blocks
    mentioned = set(re.findall(r"`make ([a-z][\w-]*)", text)) | set(re.findall(r"^make ([a-z][\w-]*)", text, re.M))
    assert mentioned <= set(targets), mentioned - set(targets)
    assert "make test" in (README.parent / ".ci" / "run").read_text()


@pytest.mark.parametrize("kind", ["avx2", "avx512_bf16", "amx"])
def test_the_python_api_example_runs_under_each_machine_kind(kind, machine, cifar_dir, tmp_path, monkeypatch, capsys):
    """The README's Python block, as written, with the default precision decided for a faked machine kind (the test
    set is cut to 32 images: bf16 really runs, emulated where this machine has no native bf16)."""
    from PIL import Image

    import resnet_cifar.data
    from resnet_cifar.data import load_cifar10 as real_load

    block = between(README.read_text(), "### Python API\n\n```python", "```")
    machine(kind)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(cifar_dir))  # the real data (skipped without it: nothing downloads)
    for name in ("cat.jpg", "a.png", "b.webp"):
        Image.new("RGB", (40, 30), (200, 120, 40)).save(tmp_path / name)
    monkeypatch.setattr(resnet_cifar.data, "load_cifar10", lambda **kw: tuple(t[:32] for t in real_load(**kw)))
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("cpu (") and ("→ bf16" in printed[0]) is machine.facts.bf16
    assert 0.5 < float(printed[1]) <= 1.0  # the shipped weights on 32 test images
