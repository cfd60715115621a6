"""The floors of ARCHITECTURE.md, checked on every module's imports (module level and inside functions):
imports point down only, and a floor never reaches a floor above it."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# a module under the key (a folder of the repository) may import, of the project, only what starts with
# one of these prefixes (absolute module names)
ALLOWED = {
    "phyprompt/infra": ("phyprompt.infra",),
    "phyprompt/language": ("phyprompt.language", "phyprompt.infra"),
    "phyprompt/refiners": ("phyprompt.refiners", "phyprompt.language", "phyprompt.infra"),
    "phyprompt/video": ("phyprompt.video", "phyprompt.language", "phyprompt.infra"),
    # a judge reads videos the way the video writer does, and the AutoEval's chat answers as refiners do
    "phyprompt/judges": ("phyprompt.judges", "phyprompt.video", "phyprompt.refiners", "phyprompt.language",
                         "phyprompt.infra"),
    # the render-and-judge service: above the families it runs, below everything that asks it for work
    "phyprompt/service": ("phyprompt.service", "phyprompt.video", "phyprompt.judges", "phyprompt.language",
                          "phyprompt.infra"),
    "phyprompt/evaluation": ("phyprompt.evaluation", "phyprompt.service", "phyprompt.refiners", "phyprompt.video", "phyprompt.judges",
                             "phyprompt.language", "phyprompt.infra"),
    "train": ("train", "phyprompt.service", "phyprompt.refiners", "phyprompt.video", "phyprompt.judges", "phyprompt.language",
              "phyprompt.infra", "phyprompt.evaluation"),
}
PROJECT = ("phyprompt", "train", "nodes", "comfy", "comfy_api", "folder_paths", "comfy_extras")


def _module(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path):
    """(line, absolute module) of every import in the file, relative ones resolved."""
    package = _module(path).split(".") if path.name == "__init__.py" else _module(path).split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            # `from . import x` imports the module x
            names = [f"{name}.{a.name}" for a in node.names] if not node.module else [name]
            yield from ((node.lineno, n) for n in names)


@pytest.mark.parametrize("floor", sorted(ALLOWED))
def test_a_floor_imports_only_the_floors_below_it(floor):
    wrong = []
    for path in sorted((REPO / floor).rglob("*.py")):
        for line, name in _imports(path):
            if name.startswith(PROJECT) and not name.startswith(ALLOWED[floor]):
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def _reads_an_address(node: ast.AST) -> bool:
    """`"://" in text`, or `text.startswith("http…")`: a test of whether a user's string names a server."""
    if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and node.left.value == "://":
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "startswith":
        values = [elt for arg in node.args for elt in (arg.elts if isinstance(arg, ast.Tuple) else [arg])]
        return any(isinstance(v, ast.Constant) and str(v.value).lower().startswith("http") for v in values)
    return False


def test_a_server_address_is_told_from_a_path_in_one_place():
    """`infra.endpoint.is_server` is the one reading; a spec is built with it where a user's string enters, and
    nothing below asks again."""
    readers = [f"{path.relative_to(REPO)}:{node.lineno}"
               for floor in ("phyprompt", "train", "nodes") for path in sorted((REPO / floor).rglob("*.py"))
               for node in ast.walk(ast.parse(path.read_text(), str(path))) if _reads_an_address(node)]
    assert [reader.split(":")[0] for reader in readers] == ["phyprompt/infra/endpoint.py"], readers
