"""The package's shape: imports point down the flow, no private names cross modules, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "glovefaiss"

# Lower layers never import higher ones (function-level imports included).
LAYERS = {
    "errors": 0, "config": 0,
    "io": 1,
    "text": 2, "vectors": 2,
    "tower": 3,
    "index": 4,
    "evaluation": 5,
    "train": 6, "engine": 6, "serve": 6,
    "cli": 7, "__main__": 7,
}


def modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        yield path, rel.parts


def imported(path: Path, parts: tuple[str, ...]):
    """(module parts within glovefaiss, imported names) of every import of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = (*base, *(node.module.split(".") if node.module else ()))
            elif node.module and node.module.split(".")[0] == "glovefaiss":
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "glovefaiss":
                    yield tuple(a.name.split(".")[1:]), []


def layer(parts: tuple[str, ...]) -> int | None:
    return LAYERS.get(parts[0]) if parts else None


def test_every_module_has_a_layer():
    for _, parts in modules():
        if parts != ("__init__",):
            assert layer(parts) is not None, f"{'/'.join(parts)}: add its room to LAYERS"


def test_imports_point_down_the_flow():
    wrong = []
    for path, parts in modules():
        if parts == ("__init__",):  # the public namespace: lazy re-exports
            continue
        for target, _ in imported(path, parts):
            if not target:  # "from .. import __version__"
                continue
            lo, hi = layer(target), layer(parts)
            if lo is not None and lo > hi:
                wrong.append(f"{'/'.join(parts)} imports {'.'.join(target)}")
    assert not wrong


def test_no_private_name_crosses_modules():
    crossing = []
    for path, parts in modules():
        for target, names in imported(path, parts):
            crossing += [f"{'/'.join(parts)}: {'.'.join(target)}.{n}" for n in names
                         if n.startswith("_") and n != "__version__"]
    assert not crossing


@pytest.mark.parametrize("limit", [600])
def test_modules_stay_small(limit):
    big = [f"{'/'.join(parts)}: {n} lines" for path, parts in modules()
           if (n := len(path.read_text(encoding="utf-8").splitlines())) > limit]
    assert not big


def test_top_level_is_a_few_modules_and_the_rooms():
    top = sorted(p.name for p in PKG.glob("*.py"))
    rooms = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())
    assert len(top) <= 8, top
    assert len(rooms) >= 4, rooms


def test_only_train_imports_torch():
    torch_users = []
    for path, parts in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(n.split(".")[0] == "torch" for n in names) and parts[0] != "train":
                torch_users.append("/".join(parts))
    # The build may pool big batches with torch's embedding bag (same bits as numpy, 3x faster).
    assert sorted(set(torch_users)) == ["index/writer", "tower/encoder", "tower/pooling"]
