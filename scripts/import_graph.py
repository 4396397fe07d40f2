"""Draw napari-smlm's internal import graph and check its two rules.

Rules (../shared/DESIGN.md, "The shape of the house"):

1. Nothing under ``napari_smlm.core`` imports from outside ``core`` (but the package's
   ``__version__``): the core stays usable without the napari adapter, widgets or CLI.
2. Module-level imports have no cycle (lazy imports inside functions are allowed: that is
   how the CLI and widgets keep start-up cheap).

Usage::

    python scripts/import_graph.py            # prints the check and a Mermaid graph of packages
    python scripts/import_graph.py --markdown docs/architecture_graph.md

The same functions back ``tests/test_architecture.py``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "napari_smlm"


def module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    if not base.startswith(PKG):
        return []
    # "from .x import y": y may be a submodule or a name; keep the submodule when it exists
    return [f"{base}.{a.name}" for a in node.names] + [base]


def imports(src: Path = SRC) -> dict[str, dict[str, bool]]:
    """``{module: {imported internal module: at module level?}}`` for every module of the package."""
    files = sorted((src / PKG).rglob("*.py"))
    known = {module_name(f, src) for f in files}
    graph: dict[str, dict[str, bool]] = {}
    for f in files:
        mod = module_name(f, src)
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        top_level = {id(n) for n in tree.body}
        # module level = directly in the body, or in a top-level if/try (TYPE_CHECKING excluded)
        for n in tree.body:
            if isinstance(n, (ast.If, ast.Try)):
                test = getattr(n, "test", None)
                if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                    continue
                for sub in ast.walk(n):
                    top_level.add(id(sub))
        edges: dict[str, bool] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith(PKG)]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve(mod, f.name == "__init__.py", node)
            else:
                continue
            for t in targets:
                while t and t not in known:  # "napari_smlm.core.io.read_x" -> "napari_smlm.core.io"
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    edges[t] = edges.get(t, False) or id(node) in top_level
        graph[mod] = edges
    return graph


def core_violations(graph: dict[str, dict[str, bool]]) -> list[tuple[str, str]]:
    """Imports from ``core`` to anything outside ``core`` but the package root (``__version__``)."""
    core = f"{PKG}.core"
    return sorted(
        (m, t)
        for m, edges in graph.items()
        if m == core or m.startswith(core + ".")
        for t in edges
        if not (t == core or t.startswith(core + ".")) and t != PKG
    )


def cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Cycles among module-level imports (each reported once, as a path)."""
    # A package's __init__ importing its own submodules, which import the package back, is how
    # Python packages work (the submodule gets the partly initialised package): not a cycle.
    def own(m: str, t: str) -> bool:
        return t.startswith(m + ".") or m.startswith(t + ".")

    adj = {m: sorted(t for t, top in e.items() if top and not own(m, t)) for m, e in graph.items()}
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in adj.get(m, []):
            if state.get(t) == 1:
                found.append(stack[stack.index(t):] + [t])
            elif state.get(t) is None:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(adj):
        if state.get(m) is None:
            visit(m)
    return found


def area(mod: str) -> str:
    """Group modules for the drawing: core sub-packages, then the adapter layer, CLI, widgets."""
    parts = mod.split(".")
    if len(parts) >= 3 and parts[1] == "core":
        sub = parts[2]
        return f"core.{sub}" if sub in {"io", "models", "metrics", "postprocessing"} else "core"
    if len(parts) >= 2 and parts[1] == "widgets":
        return "widgets"
    return parts[1] if len(parts) > 1 else PKG


def mermaid(graph: dict[str, dict[str, bool]]) -> str:
    edges = defaultdict(int)
    for m, e in graph.items():
        for t in e:
            a, b = area(m), area(t)
            if a != b:
                edges[(a, b)] += 1
    lines = ["```mermaid", "graph TD"]
    for (a, b), n in sorted(edges.items()):
        lines.append(f'  {a.replace(".", "_")}["{a}"] -->|{n}| {b.replace(".", "_")}["{b}"]')
    lines.append("```")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markdown", type=Path, help="also write the graph and the check to this Markdown file")
    a = p.parse_args(argv)
    g = imports()
    bad, cyc = core_violations(g), cycles(g)
    n_edges = sum(len(e) for e in g.values())
    report = [
        f"{len(g)} modules, {n_edges} internal imports "
        f"({sum(v for e in g.values() for v in e.values())} at module level)",
        f"imports from core to outside core: {len(bad)}" + "".join(f"\n  {m} -> {t}" for m, t in bad),
        f"cycles among module-level imports: {len(cyc)}" + "".join(f"\n  {' -> '.join(c)}" for c in cyc),
    ]
    text = "\n".join(report)
    print(text)
    graph = mermaid(g)
    print(graph)
    if a.markdown:
        a.markdown.write_text(
            "# Internal import graph\n\nGenerated by `python scripts/import_graph.py --markdown "
            f"{a.markdown.as_posix()}`; arrows point from importer to imported area, with the number of "
            "imports.\n\n" + graph + "\n\n```\n" + text + "\n```\n",
            encoding="utf-8",
        )
    return 1 if bad or cyc else 0


if __name__ == "__main__":
    sys.exit(main())
