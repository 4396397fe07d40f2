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

:func:`no_redraw_for_hidden_layer` (session 8): adding a hidden layer without vispy redrawing the
canvas for it (its picture does not change; the canvas redraws when the layer is shown).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator

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


def _view_state(viewer: Any) -> tuple:
    """What decides the picture of the layers already shown: the slice (world position on the axes not
    displayed), the displayed axes, and the camera. Not the dims' steps or ranges: a hidden layer on a
    finer grid changes those (the slider's step) without changing what is shown."""
    dims, cam = viewer.dims, viewer.camera
    point = tuple(dims.point)
    return (int(dims.ndisplay), tuple(dims.order), tuple(round(float(point[i]), 9) for i in dims.not_displayed),
            tuple(cam.center), float(cam.zoom), tuple(cam.angles))


@contextmanager
def no_redraw_for_hidden_layer(viewer: Any) -> Iterator[bool]:
    """Around adding a **hidden** layer: the canvas is not redrawn for it (its picture does not change).

    napari re-parents the new layer's vispy node into the scene, and vispy asks Qt to redraw the
    canvas although the layer is hidden: a render of every shown layer with software OpenGL,
    ~15-20 ms of process CPU in the event-loop pass after the add (``benchmarks/gui_layer_costs.py
    --callbacks``), with nothing new to see. While this context is open, vispy's redraw requests are
    dropped (its own ``SceneCanvas._update_pending`` flag set, as if a redraw were already queued);
    the layer list row, the layer controls and the rest of the window repaint as usual, and the
    canvas redraws when the layer is shown. If the add changed the dims or the camera (the shown
    layers' picture may change), a redraw is asked for at the end as usual. Yields whether redraws
    were held back: False (nothing done) when napari's canvas cannot be reached, or when a redraw
    was already queued (that one draws everything anyway). GUI thread only.
    """
    scene_canvas = None
    try:
        sc = _unwrap(viewer).window._qt_viewer.canvas._scene_canvas
        if getattr(sc, "_update_pending", None) is False and callable(getattr(sc, "update", None)):
            before = _view_state(viewer)
            scene_canvas = sc
    except Exception as exc:  # noqa: BLE001 - another napari/vispy: the canvas redraws as before
        log.debug("canvas redraws not held back (napari internals differ): %s", exc)
    if scene_canvas is None:
        yield False
        return
    scene_canvas._update_pending = True
    try:
        yield True
    finally:
        scene_canvas._update_pending = False
        try:
            changed = _view_state(viewer) != before
        except Exception:  # noqa: BLE001 - cannot tell: redraw to be safe
            changed = True
        if changed:
            scene_canvas.update()
