"""The house rules of the import graph (scripts/import_graph.py): core never imports upward, no cycles."""

import importlib.util
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
ig = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ig)


def test_core_imports_nothing_above_it_and_there_is_no_cycle():
    g = ig.imports()
    assert "napari_smlm.core.inference" in g and "napari_smlm.widgets._reconstruction" in g
    assert ig.core_violations(g) == []
    assert ig.cycles(g) == []


def _pkg(tmp_path, files):
    for name, text in files.items():
        p = tmp_path / "napari_smlm" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    src = _pkg(tmp_path, {
        "__init__.py": "__version__ = '0'\n",
        "_layers.py": "from .core import render\n",
        "core/__init__.py": "",
        "core/render.py": "from .. import __version__\nfrom .metrics import ssim\n",
        "core/metrics.py": "from .render import x\ndef f():\n    from .. import _layers\n",
        "core/lazy.py": "def g():\n    from .render import x\n",
    })
    g = ig.imports(src)
    assert ig.core_violations(g) == [("napari_smlm.core.metrics", "napari_smlm._layers")]
    cyc = ig.cycles(g)
    assert len(cyc) == 1 and set(cyc[0]) == {"napari_smlm.core.render", "napari_smlm.core.metrics"}
    assert g["napari_smlm.core.lazy"] == {"napari_smlm.core.render": False}  # a lazy import is no cycle edge

