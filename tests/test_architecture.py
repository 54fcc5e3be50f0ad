"""The shape of the package: layers that import only downwards (lazy imports inside functions count too), no import
cycles, short functions, unique module names; and the repository's lab (lab/, benchmarks/, tools/) beside the package,
using its public API only."""

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "resnet_cifar"
MAX_FUNCTION_LINES = 50

# Each layer may import from its own and lower ones. A module's layer is its first name under resnet_cifar.
LAYERS = [
    {"__init__", "errors", "files", "choices", "machine", "allocator", "seeding", "yaml_text", "interrupts"},
    {"runtime"},
    {"models", "data"},
    {"run_folder", "checkpoint", "config"},
    {"inference"},
    {"evaluate"},
    {"viz"},
    {"train"},
    {"experiments"},
    {"serve"},
    {"cli", "entry", "__main__"},
]
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (imports for type hints only, never executed)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def imported_names(path: Path) -> set[str]:
    """Every module name `path` imports, at the top or inside functions (a lazy import is still a dependency)."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def imports_of(path: Path) -> set[str]:
    return {name for name in imported_names(path) if name in MODULES}


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYER[parts[1] if len(parts) > 1 else "__init__"]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = {name: imports_of(path) - {name} for name, path in MODULES.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_belongs_to_a_layer_and_imports_none_above_it():
    upward = []
    for name, path in MODULES.items():
        for imported in imports_of(path):
            if layer_of(imported) > layer_of(name):
                upward.append(f"{name} imports {imported}")
    assert not upward, upward


def test_every_function_is_short():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, long


def test_no_two_modules_share_a_name():
    names = [path.stem for path in PACKAGE.rglob("*.py") if not path.stem.startswith("__")]
    packages = [path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()]
    repeated = sorted({name for name in names + packages if (names + packages).count(name) > 1})
    assert not repeated, repeated


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


LAB = [*(REPO / "lab").rglob("*.py"), *(REPO / "benchmarks").glob("*.py"), *(REPO / "tools").glob("*.py")]


def test_the_package_holds_no_lab_and_never_locates_the_repository():
    for path in MODULES.values():
        text = path.read_text()
        assert "ledger" not in text, f"{path} mentions the results ledger"
        assert "docs/results" not in text and "parents[2]" not in text, path


@pytest.mark.parametrize("path", LAB, ids=lambda path: str(path.relative_to(REPO)))
def test_the_lab_uses_only_the_package_s_public_api(path):
    """No CLI internals (the CLI is an interface, not an API), no private modules or names."""
    for name in imported_names(path):
        if not name.startswith("resnet_cifar."):
            continue
        assert not name.startswith(("resnet_cifar.cli", "resnet_cifar.entry")), f"{path} imports {name}"
        assert not any(part.startswith("_") for part in name.split(".")), f"{path} imports {name}"
