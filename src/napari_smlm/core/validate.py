"""One validation layer for parameters: ranges, finiteness, types, devices, model size.

The CLI (argparse ``type=``), the configuration dataclasses (``__post_init__``) and through
them the widgets and the Python API all check values here, so that the same bad value gives
the same message everywhere: it names the parameter, the value and the allowed range, e.g.
``em_gain = 0: must be >= 1 (1 for sCMOS/CCD)``.

No torch at import time, no Qt.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ParameterError",
    "Range",
    "RANGES",
    "arg",
    "check",
    "check_device",
    "check_fields",
    "check_model_size",
    "MAX_MODEL_PARAMETERS",
]


class ParameterError(ValueError):
    """A parameter value outside what it may be.

    Attributes
    ----------
    name : str
        Parameter name as the user knows it (``em_gain``, ``--batch-size``).
    value : Any
        The offending value.
    allowed : str
        The allowed range in words.
    """

    def __init__(self, name: str, value: Any, allowed: str):
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"{name} = {value!r}: must be {allowed}")


@dataclass(frozen=True)
class Range:
    """Allowed values of one number: bounds (open or closed), integer or not, unit, hint.

    ``None`` as a value is accepted only when ``optional``; NaN and ±inf never are, except
    ``+inf`` when ``hi`` is None and ``allow_inf`` is set (e.g. "no bleaching").
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    optional: bool = False
    allow_inf: bool = False
    unit: str = ""
    hint: str = ""

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        u = f" {self.unit}" if self.unit else ""
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {_fmt(self.lo)}{u}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {_fmt(self.hi)}{u}")
        if self.lo is not None and self.hi is not None and not self.lo_open and not self.hi_open:
            text = f"{kind} in [{_fmt(self.lo)}, {_fmt(self.hi)}]{u}"
        elif parts:
            text = f"{kind} " + " and ".join(parts)
        else:
            text = kind
        if self.optional:
            text += " (or none)"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def check(self, name: str, value: Any) -> Any:
        """Return ``value`` (an int for integer ranges) or raise :class:`ParameterError`."""
        if value is None:
            if self.optional:
                return None
            raise ParameterError(name, value, self.describe())
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ParameterError(name, value, self.describe())
        v = float(value)
        if math.isnan(v) or (math.isinf(v) and not (self.allow_inf and v > 0 and self.hi is None)):
            raise ParameterError(name, value, self.describe())
        if self.integer:
            if not math.isinf(v) and v != int(v):
                raise ParameterError(name, value, self.describe())
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            raise ParameterError(name, value, self.describe())
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            raise ParameterError(name, value, self.describe())
        if self.integer and isinstance(value, float) and not math.isinf(v):
            return int(v)
        return value


def _fmt(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


_POS = dict(lo=0.0, lo_open=True)
_NONNEG = dict(lo=0.0)

#: Allowed values of every named parameter (configuration fields and CLI options alike).
RANGES: dict[str, Range] = {
    # --- SimulationConfig
    "n_frames": Range(lo=1, hi=1e9, integer=True, unit="frames"),
    "height": Range(lo=1, hi=65536, integer=True, unit="px"),
    "width": Range(lo=1, hi=65536, integer=True, unit="px"),
    "pixel_size_nm": Range(**_POS, hi=1e5, unit="nm"),
    "psf_sigma_nm": Range(**_POS, hi=1e5, unit="nm"),
    "psf_sigma_std_nm": Range(**_NONNEG, hi=1e5, unit="nm"),
    "density": Range(**_NONNEG, hi=1e4, unit="/µm²"),
    "n_filaments": Range(lo=0, hi=1e6, integer=True),
    "filament_persistence_nm": Range(**_POS, unit="nm"),
    "filament_width_nm": Range(**_NONNEG, unit="nm"),
    "photons_mean": Range(**_NONNEG, hi=1e9, unit="photons"),
    "photons_std": Range(**_NONNEG, hi=1e9, unit="photons"),
    "photons_min": Range(**_NONNEG, hi=1e9, unit="photons"),
    "bg_photons": Range(**_NONNEG, hi=1e9, unit="photons/px"),
    "bg_variation": Range(**_NONNEG, hi=1.0),
    "bg_length_nm": Range(**_POS, unit="nm"),
    "t_on": Range(**_POS, unit="frames"),
    "t_off": Range(**_POS, unit="frames"),
    "t_bleach": Range(**_POS, optional=True, allow_inf=True, unit="frames", hint="none = no bleaching"),
    "margin_px": Range(**_NONNEG, hi=1e4, unit="px"),
    "seed": Range(lo=0, hi=2**63 - 1, integer=True),
    # --- Camera
    "baseline": Range(lo=-1e6, hi=1e9, unit="ADU"),
    "sensitivity": Range(**_POS, hi=1e6, unit="e-/ADU"),
    "em_gain": Range(lo=1.0, hi=1e5, hint="1 for sCMOS/CCD"),
    "qe": Range(**_POS, hi=1.0),
    "read_noise": Range(**_NONNEG, hi=1e6, unit="e- rms"),
    "spurious_charge": Range(**_NONNEG, hi=1e3, unit="e-/px/frame"),
    # --- TrainConfig
    "steps": Range(lo=1, hi=1e9, integer=True),
    "steps_per_epoch": Range(lo=1, hi=1e9, integer=True),
    "batch_size": Range(lo=1, hi=65536, integer=True),
    "lr": Range(**_POS, hi=10.0),
    "weight_decay": Range(**_NONNEG, hi=10.0),
    "lr_factor": Range(**_POS, hi=1.0, hi_open=True),
    "lr_patience": Range(lo=0, hi=1e6, integer=True),
    "min_lr": Range(**_NONNEG, hi=10.0),
    "val_batches": Range(lo=1, hi=1e6, integer=True),
    "grad_clip": Range(**_NONNEG),
    "threads": Range(lo=0, hi=4096, integer=True, hint="0 = physical cores"),
    "max_minutes": Range(**_NONNEG, unit="min", hint="0 = no limit"),
    # --- command-line / API options
    "val_fraction": Range(lo=0.0, hi=1.0, hi_open=True),
    "crop": Range(lo=4, hi=4096, integer=True, unit="px"),
    "threshold": Range(lo=0.0, hi=1.0, optional=True),
    "chunk": Range(lo=1, hi=1e7, integer=True, unit="frames"),
    "render_pixel_size": Range(lo=0.01, hi=1e5, unit="nm"),
    "render_sigma": Range(**_NONNEG, hi=1e5, unit="nm"),
    "camera_pixel_size": Range(**_POS, hi=1e5, unit="nm"),
    "tolerance": Range(**_POS, hi=1e6, unit="nm"),
    "frame": Range(lo=0, hi=1e12, integer=True),
    "excess_noise": Range(lo=1.0, hi=2.0),
    "minutes": Range(**_NONNEG, unit="min", hint="0 = no limit"),
    "density_demo": Range(**_POS, hi=100, unit="/µm²"),
    "demo_frames": Range(lo=1, hi=1e6, integer=True),
}


def check(name: str, value: Any, key: str | None = None) -> Any:
    """Check ``value`` against ``RANGES[key or name]``; the error names ``name``."""
    return RANGES[key or name].check(name, value)


def check_fields(obj: Any, names: Mapping[str, str] | None = None, where: str = "") -> None:
    """Check every dataclass field of ``obj`` that has an entry in :data:`RANGES`.

    ``names`` maps field names to other keys of ``RANGES``; ``where`` prefixes the message
    (e.g. ``"SimulationConfig"``).
    """
    for f in dataclasses.fields(obj):
        key = (names or {}).get(f.name, f.name)
        if key in RANGES:
            try:
                RANGES[key].check(f.name, getattr(obj, f.name))
            except ParameterError as exc:
                if where:
                    raise ParameterError(f"{where}.{f.name}", exc.value, exc.allowed) from None
                raise


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(device: Any, name: str = "device") -> str:
    """A device string ``auto | cpu | cuda | cuda:N | mps`` (case-insensitive), or an error."""
    if hasattr(device, "type") and not isinstance(device, str):  # a torch.device
        return device
    if not isinstance(device, str) or not _DEVICE.match(device.strip().lower()):
        raise ParameterError(name, device, "one of auto, cpu, cuda, cuda:N, mps")
    return device.strip().lower()


def arg(key: str, option: str | None = None) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses and range-checks ``RANGES[key]``.

    The error (``argparse.ArgumentTypeError``) gives the value and the allowed range;
    argparse prefixes the option name.
    """
    rng = RANGES[key]

    def parse(text: str) -> Any:
        try:
            value: Any = int(text) if rng.integer else float(text)
        except ValueError:
            if rng.integer:
                try:
                    value = float(text)
                except ValueError:
                    raise argparse.ArgumentTypeError(f"{text!r} is not a number; must be {rng.describe()}") from None
            else:
                raise argparse.ArgumentTypeError(f"{text!r} is not a number; must be {rng.describe()}") from None
        try:
            return rng.check(option or key, value)
        except ParameterError as exc:
            raise argparse.ArgumentTypeError(f"{text}: must be {exc.allowed}") from None

    parse.__name__ = key  # argparse names the type in some messages
    return parse


def device_arg(text: str) -> str:
    """argparse ``type=`` for ``--device``."""
    try:
        return check_device(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: must be {exc.allowed}") from None


#: Largest network (parameters) a configuration may ask for: the biggest shipped model has
#: ~1.4 M; 64 M parameters are ~256 MB of float32 weights before any activation.
MAX_MODEL_PARAMETERS = 64_000_000


def _meta_without_init():
    """A context that builds torch modules on the ``meta`` device and skips in-place initialisers.

    Like ``with torch.device("meta")`` (shapes only, no memory), but in-place calls on meta
    tensors (``normal_``, ``uniform_``, ``zero_`` ... of the weight initialisers) return at once:
    on meta tensors those run PyTorch's Python reference kernels, whose first call imports
    ``torch._dynamo`` (~1 CPU-s, 2-3 s on a busy machine: most of ``napari-smlm localize``'s
    start-up after torch itself). A torch-function mode is thread-local, so a training running in
    another thread is not affected.
    """
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._device import _device_constructors

    class _MetaNoInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name.endswith("_") and not name.endswith("__") and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
                return args[0]
            if func in _device_constructors() and kwargs.get("device") is None:
                kwargs["device"] = "meta"
            return func(*args, **kwargs)

    return _MetaNoInit()


def check_model_size(family: Any, max_parameters: int = MAX_MODEL_PARAMETERS) -> int:
    """Count a family's network parameters without allocating them; refuse absurd sizes.

    The network is built on PyTorch's ``meta`` device (shapes only, no memory), so a config
    asking for a gigantic network fails here in milliseconds instead of exhausting memory.

    Returns
    -------
    int
        Number of parameters.

    Raises
    ------
    ParameterError
        More than ``max_parameters``.
    """
    try:
        with _meta_without_init():
            net = family.build()
    except Exception as exc:  # noqa: BLE001 - a family whose build needs real tensors: not sized here
        import logging

        logging.getLogger(__name__).debug("%s: cannot size on the meta device (%s)", family.name, exc)
        return -1
    n = sum(int(p.numel()) for p in net.parameters())
    if n > max_parameters:
        arch = {k: v for k, v in family.config.items() if re.search(r"width|feat|chan|depth|block", k)}
        raise ParameterError(
            f"model_config of {family.name!r} {arch}",
            f"{n:,} parameters",
            f"at most {max_parameters:,} parameters (check its width / features / channels)",
        )
    return n


def check_frames_array(frames: Any, name: str = "movie") -> None:
    """A movie for inference: 2-D (one frame) or 3-D ``(T, H, W)``, non-empty, numeric, finite.

    Finiteness is checked for in-memory float arrays only (TIFF movies are integers).
    """
    import numpy as np

    shape = tuple(getattr(frames, "shape", ()))
    if len(shape) not in (2, 3):
        raise ParameterError(f"{name} shape", shape, "2-D (H, W) or 3-D (T, H, W) frames")
    if 0 in shape:
        raise ParameterError(f"{name} shape", shape, "non-empty")
    dtype = np.dtype(getattr(frames, "dtype", np.float64))
    if dtype.kind not in "uif":
        raise ParameterError(f"{name} dtype", str(dtype), "integer or float pixel values")
    if isinstance(frames, np.ndarray) and dtype.kind == "f":
        n_bad = int(np.count_nonzero(~np.isfinite(frames)))
        if n_bad:
            raise ParameterError(f"{name} pixels", f"{n_bad} NaN/inf values", "finite numbers")


def check_frame_range(start: Any, stop: Any, name: str = "frames") -> tuple[int, int | None]:
    """A ``[start, stop)`` frame range: ``0 <= start < stop`` (``stop`` None = to the end)."""
    start = RANGES["frame"].check(f"{name} start", start)
    if stop is not None:
        stop = RANGES["frame"].check(f"{name} stop", stop)
        if stop <= start:
            raise ParameterError(f"{name}", (start, stop), f"START STOP with 0 <= START < STOP (frames, 0-based, STOP excluded)")
    return start, stop
