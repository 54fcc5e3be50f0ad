"""The README's generated parts must match what the code produces."""

import json
import re
from pathlib import Path

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
