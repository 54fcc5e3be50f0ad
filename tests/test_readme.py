"""The README's generated parts must match what the code produces."""

from pathlib import Path

from resnet_cifar.models import format_table, model_table

README = Path(__file__).resolve().parents[1] / "README.md"


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_model_table_is_generated_not_typed():
    text = README.read_text()
    table = between(text, "<!-- models:start -->", "<!-- models:end -->")
    assert table == format_table(model_table()), "regenerate with: resnet-cifar models"


def test_readme_gives_the_two_commands():
    text = README.read_text()
    assert "make train" in text and "make test" in text
