#!/usr/bin/env python3
"""Import-cycle check for the pgmrl package: exits 1 and lists the cycles when there are any.

Reads every module under pyext/pgmrl with `ast` (nothing is imported or run) and collects its explicit imports of
other pgmrl modules, at module level and inside functions alike (a function-level import still closes a cycle
when it runs). Relative imports are resolved to absolute names; importing a package means its __init__ module;
`from pkg import name` means the module pkg.name when there is one, else pkg. The parent packages that Python
imports implicitly on the way to a module are not edges: only what the source names counts. A cycle is a strongly
connected component of more than one module, or a module that imports itself.

    python scripts/check_imports.py               # pyext/pgmrl of this checkout
    python scripts/check_imports.py path/to/pkg   # another package directory
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_names(pkg_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package (a package's name is its __init__)."""
    out = {}
    for path in sorted(pkg_dir.rglob("*.py")):
        parts = list(path.relative_to(pkg_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str | None:
    """The absolute name `from <level dots><target> import ...` refers to inside `module`; None past the top."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(base) - 1:
        return None
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _existing(name: str, modules: dict[str, Path]) -> str | None:
    """The module `name` names, or its longest prefix that is a module (an attribute path); None outside."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The package modules `module` imports explicitly -> the first line that imports each."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target is not None:
            out[target] = min(line, out.get(target, line))

    # imports under `if TYPE_CHECKING:` never run: type annotations may name a module that imports this one
    type_only = {id(n) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                 for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_existing(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module
            if base is None:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if alias.name != "*" and sub in modules:
                    add(sub, node.lineno)  # `from pkg import submodule`
                else:
                    add(_existing(base, modules), node.lineno)
    return out


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); components in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Components of more than one module, and modules that import themselves."""
    return sorted(c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph[c[0]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", type=Path, default=ROOT / "pyext" / "pgmrl",
                        help="the package directory (default: pyext/pgmrl)")
    args = parser.parse_args(argv)
    modules = module_names(args.package)
    graph = {m: imports_of(m, p, modules) for m, p in modules.items()}
    found = cycles(graph)
    edges = sum(len(targets) for targets in graph.values())
    if not found:
        print(f"import graph of {args.package.name}: {len(modules)} modules, {edges} edges, no cycles")
        return 0
    print(f"import graph of {args.package.name}: {len(modules)} modules, {edges} edges, {len(found)} cycle(s):")
    for component in found:
        members = set(component)
        print(f"  cycle: {', '.join(component)}")
        for source in component:
            for target, line in sorted(graph[source].items()):
                if target in members:
                    print(f"    {modules[source].relative_to(args.package.parent)}:{line}: {source} -> {target}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
