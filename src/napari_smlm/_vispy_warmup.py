"""Prepare a hidden layer's first draw in small steps: vispy's shader programs built and compiled ahead.

The first draw of a new napari layer is one of the longest stalls of a live run (issue 10,
``benchmarks/gui_layer_costs.py``): vispy generates each visual's GLSL in Python
(``ModularProgram._build``: ~10 ms for the points' markers, ~40 ms for their text visual) and Mesa
compiles and links it, all inside the canvas repaint that first shows the layer. A layer created
hidden (the Reconstruction widget creates its result layers so) is not drawn, so that work can be
done earlier, one program per event-loop turn: :func:`warm_up_steps` returns those steps; after
them the repaint that shows the layer only draws.

Nothing is drawn and nothing visible changes: the steps call what vispy's own draw would call on
the layer's visuals (``_prepare_draw``, ``ModularProgram.build_if_needed``, the GL context's command
flush). They use napari's private canvas (``window._qt_viewer.canvas.layer_to_visual``): with a
napari that has no such thing, or any step that fails, there are no steps (or that step is skipped)
and the first draw does the work as before. GUI thread only (vispy and OpenGL are not thread-safe).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ._layer_viewer import _unwrap

log = logging.getLogger(__name__)


def _scene_canvas_and_node(viewer: Any, layer: Any) -> tuple[Any, Any] | None:
    """(vispy ``SceneCanvas``, the layer's vispy node), or None when napari's internals are not as known."""
    try:
        canvas = _unwrap(viewer).window._qt_viewer.canvas
        vispy_layer = canvas.layer_to_visual.get(_unwrap(layer))
        if vispy_layer is None:
            return None
        return canvas._scene_canvas, vispy_layer.node
    except Exception as exc:  # noqa: BLE001 - another napari: no warm-up, the first draw does it
        log.debug("no vispy warm-up (napari internals differ): %s", exc)
        return None


def _drawn_visuals(node: Any) -> list[Any]:
    """The leaf visuals a draw of ``node`` would draw if it were shown (``node`` itself may be hidden)."""
    from vispy.visuals.shaders.program import ModularProgram

    out, stack = [], [(node, True)]
    while stack:
        n, root = stack.pop()
        if not root and not getattr(n, "visible", True):
            continue
        subs = list(getattr(n, "_subvisuals", None) or [])
        if subs:
            stack.extend((s, False) for s in reversed(subs))
        elif isinstance(getattr(n, "_program", None), ModularProgram):
            out.append(n)
        stack.extend((c, False) for c in reversed(list(getattr(n, "children", None) or [])))
    return out


def warm_up_steps(viewer: Any, layer: Any) -> list[Callable[[], None]]:
    """Steps that prepare the first draw of the hidden ``layer``: one per shader program, then the GL compile.

    Each step is a short call for the GUI thread (one event-loop turn each: the longest, the
    points' text program, is ~40 ms of CPU where the whole first draw was ~75-100 ms). The
    programs to build are found when the steps are made (the layer's visuals as they are then);
    a program already built is skipped. Empty when napari's canvas cannot be reached.
    """
    found = _scene_canvas_and_node(viewer, layer)
    if found is None:
        return []
    scene_canvas, node = found
    visuals = _drawn_visuals(node)

    def build(v: Any) -> Callable[[], None]:
        def step() -> None:
            try:
                # what vispy's draw does first: uniforms, buffers and the shader hooks of this draw;
                # False means the visual has nothing to draw (its program stays for the draw to build)
                if v.visible and v._prepare_draw(v) is not False:
                    v._program.build_if_needed()
            except Exception as exc:  # noqa: BLE001 - the first draw builds it instead
                log.debug("vispy warm-up: building %s failed: %s", type(v).__name__, exc)

        return step

    def compile_programs() -> None:
        try:
            native = scene_canvas.native
            if not (native.isValid() and native.isVisible()):  # no GL context yet (a viewer never shown)
                return
            scene_canvas.set_current()
            for v in visuals:
                if not v._program._need_build:
                    scene_canvas.context.glir.associate(v._program.glir)
            scene_canvas.context.flush_commands()  # Mesa compiles and links the programs now
        except Exception as exc:  # noqa: BLE001 - the first draw compiles them instead
            log.debug("vispy warm-up: compiling failed: %s", exc)

    steps = [build(v) for v in visuals]
    return [*steps, compile_programs] if steps else []


def programs_to_build(viewer: Any, layer: Any) -> int | None:
    """How many of the programs a first draw of ``layer`` would use still need building (None: unknown)."""
    found = _scene_canvas_and_node(viewer, layer)
    if found is None:
        return None
    return sum(1 for v in _drawn_visuals(found[1]) if v._program._need_build)
