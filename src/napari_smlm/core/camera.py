"""Camera models: ADU <-> photons and the forward noise model.

The forward model of one pixel, for an expected number of photons ``λ`` reaching it:

1. photo-electrons ``n ~ Poisson(QE · λ + c)`` (``c``: spurious charge, e⁻/pixel/frame);
2. EM multiplication (EMCCD only, gain ``G > 1``): ``m ~ Gamma(shape=n, scale=G)``,
   which reproduces the excess noise factor F² ≈ 2 of an EM register;
3. read noise: ``m + Normal(0, σ_read)`` (e⁻);
4. conversion: ``ADU = m / sensitivity + baseline``, rounded and clipped to uint16.

:meth:`Camera.adu_to_photons` inverts the mean of that chain.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "Camera", "CAMERA_PRESETS", "CameraProfile", "get_camera", "estimate_baseline_adu", "is_camera_profile",
    "load_camera_profile", "read_camera_profile", "save_camera_profile",
]


@dataclass(frozen=True)
class Camera:
    """Camera parameters.

    Parameters
    ----------
    kind : {"emccd", "scmos", "ccd"}
        Only informative, except that ``excess_noise`` depends on ``em_gain``.
    baseline : float
        Offset added by the camera (ADU).
    sensitivity : float
        Electrons per ADU (e⁻/ADU) *before* EM gain ("pre-amp gain" in DECODE's terms).
    em_gain : float
        Electron-multiplying gain (1 for sCMOS / CCD).
    qe : float
        Quantum efficiency (photo-electrons per photon), in [0, 1].
    read_noise : float
        Read noise, RMS e⁻ (after EM multiplication, i.e. in output electrons).
    spurious_charge : float
        Clock-induced charge, mean e⁻ per pixel per frame (before EM gain).
    """

    kind: str = "emccd"
    baseline: float = 100.0
    sensitivity: float = 45.0
    em_gain: float = 300.0
    qe: float = 0.9
    read_noise: float = 74.4
    spurious_charge: float = 0.0002

    def __post_init__(self):
        from .validate import check_fields

        check_fields(self, where="Camera")

    @property
    def excess_noise(self) -> float:
        """Excess noise factor F used in the CRLB: 2 with EM gain, 1 otherwise."""
        return 2.0 if self.em_gain > 1 else 1.0

    def noise_photons(self, bg_photons: float) -> float:
        """Pixel noise σ (photons) at a background of ``bg_photons`` per pixel: shot noise with the
        excess factor plus read noise, referred to the input (what decode's input adaptation and the
        out-of-distribution check compare a movie's measured noise with)."""
        qe = max(float(self.qe), 1e-6)
        read = float(self.read_noise) / (max(float(self.em_gain), 1.0) * qe)
        return math.sqrt(self.excess_noise * max(float(bg_photons), 0.0) / qe + read * read)

    @property
    def adu_per_photon(self) -> float:
        """Mean ADU per detected photon (QE · gain / sensitivity)."""
        return self.qe * self.em_gain / self.sensitivity

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def replace(self, **kw) -> Camera:
        return replace(self, **kw)

    # ---------------------------------------------------------------- inverse
    def adu_to_photons(self, adu):
        """Mean photons for ADU values (array, numpy or torch): ``(adu − baseline) · s / (G · QE)``.

        Spurious charge is negligible and not subtracted. Works on numpy arrays and torch
        tensors; integer input is promoted to float32.
        """
        scale = self.sensitivity / (self.em_gain * self.qe)
        if isinstance(adu, torch.Tensor):
            return (adu.float() - self.baseline) * scale
        return (np.asarray(adu, dtype=np.float32) - np.float32(self.baseline)) * np.float32(scale)

    def photons_to_adu_mean(self, photons):
        """Expected ADU for an expected number of photons (no noise, no clipping)."""
        return photons * self.adu_per_photon + self.baseline

    # ---------------------------------------------------------------- forward
    def forward(self, photons: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply the noise model to expected photons per pixel.

        Parameters
        ----------
        photons : torch.Tensor
            Expected photons per pixel (any shape, float), on any device.
        generator : torch.Generator, optional
            For reproducibility; must live on ``photons.device``.

        Returns
        -------
        torch.Tensor
            Float tensor of ADU values, rounded and clipped to the uint16 range (convert with
            ``.to(torch.int32)`` / numpy ``astype(uint16)``).
        """
        lam = photons.clamp_min(0) * self.qe + self.spurious_charge
        electrons = torch.poisson(lam, generator=generator)
        if self.em_gain > 1:
            # Gamma(shape=n, scale=G); n = 0 gives 0. torch's own gamma sampler takes no
            # generator, so seeded runs use our vectorised Marsaglia-Tsang sampler.
            conc = electrons.clamp_min(1e-6)
            g = _standard_gamma(conc, generator)
            electrons = torch.where(electrons > 0, g * self.em_gain, torch.zeros_like(g))
        if self.read_noise > 0:
            electrons = electrons + self.read_noise * torch.randn(
                electrons.shape, generator=generator, device=electrons.device, dtype=electrons.dtype
            )
        adu = electrons / self.sensitivity + self.baseline
        return adu.round().clamp(0, 65535)


def _standard_gamma(conc: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gamma(conc, 1) samples that honour ``generator``.

    Marsaglia–Tsang with a fixed number of rejection rounds (vectorised); shapes < 1 use the
    boost ``Gamma(a) = Gamma(a + 1) · U^(1/a)``. After 8 rounds the rejection probability of
    any sample is < 1e-10; the rare leftovers take the mean of the proposal.
    """
    dev, dt = conc.device, conc.dtype
    small = conc < 1
    a = torch.where(small, conc + 1, conc)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = d.clone()
    todo = torch.ones_like(conc, dtype=torch.bool)
    for _ in range(8):
        x = torch.randn(conc.shape, generator=generator, device=dev, dtype=dt)
        u = torch.rand(conc.shape, generator=generator, device=dev, dtype=dt)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        take = ok & todo
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
        if not bool(todo.any()):
            break
    if bool(small.any()):
        u = torch.rand(conc.shape, generator=generator, device=dev, dtype=dt).clamp_min(1e-30)
        out = torch.where(small, out * u ** (1.0 / conc), out)
    return out


#: Presets. ``smlm2016_emccd`` follows the SMLM-2016 challenge's simulated EMCCD.
CAMERA_PRESETS: dict[str, Camera] = {
    "smlm2016_emccd": Camera(
        kind="emccd", baseline=100.0, sensitivity=45.0, em_gain=300.0, qe=0.9, read_noise=74.4, spurious_charge=0.0002
    ),
    "generic_scmos": Camera(
        kind="scmos", baseline=100.0, sensitivity=0.46, em_gain=1.0, qe=0.8, read_noise=1.6, spurious_charge=0.0
    ),
    # Photon-counting idealisation: 1 ADU per photon, no offset, no read noise (tests, ThunderSTORM-like data).
    "ideal": Camera(kind="ccd", baseline=0.0, sensitivity=1.0, em_gain=1.0, qe=1.0, read_noise=0.0, spurious_charge=0.0),
}

#: Names users type for the presets.
CAMERA_ALIASES: dict[str, str] = {"emccd": "smlm2016_emccd", "scmos": "generic_scmos"}


def get_camera(name_or_camera: str | os.PathLike | Camera | dict) -> Camera:
    """Resolve a preset name, a camera profile YAML (:func:`is_camera_profile`), a dict or a :class:`Camera`."""
    if isinstance(name_or_camera, Camera):
        return name_or_camera
    if isinstance(name_or_camera, dict):
        return Camera.from_dict(name_or_camera)
    if isinstance(name_or_camera, os.PathLike):
        return load_camera_profile(name_or_camera)
    if isinstance(name_or_camera, str):
        key = CAMERA_ALIASES.get(name_or_camera.strip().lower(), name_or_camera.strip())
        if key not in CAMERA_PRESETS and is_camera_profile(name_or_camera):  # a preset name wins over a same-named file
            return load_camera_profile(name_or_camera.strip())
        name_or_camera = key
    try:
        return CAMERA_PRESETS[name_or_camera]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown camera preset {name_or_camera!r}; known: {sorted(CAMERA_PRESETS)} (or {sorted(CAMERA_ALIASES)}), "
            "or a camera profile .yaml file"
        ) from None


def estimate_baseline_adu(frames, percentile: float = 1.0) -> float:
    """Camera offset estimate (ADU): a low percentile of a few frames.

    The darkest pixels of a frame get (almost) no fluorescence, so their value is the offset
    plus a little background. This overestimates the offset when every pixel sees background
    (then prefer the camera's specification sheet); it never needs dark frames.
    """
    a = np.asarray(frames, dtype=np.float32)
    return float(np.percentile(a[np.isfinite(a)], percentile))


# --------------------------------------------------------------------------- profiles (YAML)
#: Suffixes of a camera profile file.
PROFILE_SUFFIXES = (".yaml", ".yml")
#: Format marker and version written at the top of every profile.
PROFILE_KEY = "napari_smlm_camera_profile"
PROFILE_VERSION = 1
_REQUIRED = ("kind", "baseline", "sensitivity", "em_gain", "qe", "read_noise")
_UNITS = {"baseline": "ADU", "sensitivity": "e-/ADU", "em_gain": "", "qe": "", "read_noise": "e- rms", "spurious_charge": "e-/px/frame"}
_META = {PROFILE_KEY, "name", "notes", "estimate", "napari_smlm_version", "guessed"}


@dataclass(frozen=True)
class CameraProfile:
    """A named camera saved as YAML: the :class:`Camera`, and how its values were obtained.

    Attributes
    ----------
    name : str
        The profile's name (default: the file's stem).
    camera : Camera
    guessed : tuple of str
        Fields that were not measured (e.g. ``qe`` after an estimate from a movie).
    estimate : dict
        The :meth:`~napari_smlm.core.camera_estimate.CameraEstimate.to_dict` that made it, if any.
    notes : str
    path : str or None
        The file it was read from.
    """

    name: str
    camera: Camera
    guessed: tuple = ()
    estimate: dict = field(default_factory=dict)
    notes: str = ""
    path: str | None = None


def is_camera_profile(value: str | os.PathLike) -> bool:
    """True when ``value`` names a camera profile: it ends in .yaml/.yml or is an existing file."""
    if isinstance(value, os.PathLike):
        return True
    if not isinstance(value, str) or not value.strip():
        return False
    v = value.strip()
    return v.lower().endswith(PROFILE_SUFFIXES) or Path(v).expanduser().is_file()


def _profile_error(path, problem: str):
    from .io.errors import SMLMFileError

    return SMLMFileError(path, problem)


def read_camera_profile(path: str | os.PathLike) -> CameraProfile:
    """Read and validate a camera profile YAML (``yaml.safe_load``: no tag ever runs code).

    The file is a mapping with a ``camera`` mapping of :class:`Camera` fields (``kind``,
    ``baseline`` ADU, ``sensitivity`` e⁻/ADU, ``em_gain``, ``qe``, ``read_noise`` e⁻ RMS, and
    optionally ``spurious_charge``), or those fields at the top level; ``name``, ``notes``,
    ``guessed`` and ``estimate`` are optional.

    Raises
    ------
    SMLMFileError
        The file is missing, not YAML, or a field is missing, unknown, of the wrong type or out
        of range; the message names the file and the field.
    """
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise _profile_error(p, "no such camera profile file" if not p.exists() else "not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _profile_error(p, f"cannot read the camera profile ({exc})") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        raise _profile_error(p, f"not a plain YAML camera profile: {exc.problem} {exc.problem_mark or ''} (tags are never run)".strip()) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise _profile_error(p, f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from exc
    if not isinstance(doc, dict):
        raise _profile_error(p, f"a camera profile is a YAML mapping (camera: {{baseline: …}}), got {type(doc).__name__}")
    version = doc.get(PROFILE_KEY, PROFILE_VERSION)
    if version != PROFILE_VERSION:
        raise _profile_error(p, f"{PROFILE_KEY}: version {version!r} is not supported (this napari-smlm reads version {PROFILE_VERSION})")
    if "camera" in doc:
        cam, prefix = doc["camera"], "camera."
        extra = sorted(set(doc) - _META - {"camera"})
        if extra:
            raise _profile_error(p, f"{extra[0]}: unknown field (a profile has {sorted(_META | {'camera'})})")
        if not isinstance(cam, dict):
            raise _profile_error(p, f"camera: must be a mapping of camera fields, got {type(cam).__name__}")
    else:
        cam, prefix = {k: v for k, v in doc.items() if k not in _META}, ""
    known = set(Camera.__dataclass_fields__)
    for k in cam:
        if k not in known:
            raise _profile_error(p, f"{prefix}{k}: unknown camera field (known: {', '.join(sorted(known))})")
    missing = [k for k in _REQUIRED if k not in cam]
    if missing:
        raise _profile_error(p, f"{prefix}{missing[0]}: missing (a camera profile needs {', '.join(_REQUIRED)})")
    kind = cam["kind"]
    if not isinstance(kind, str) or kind.strip().lower() not in ("emccd", "scmos", "ccd"):
        raise _profile_error(p, f"{prefix}kind: {kind!r} is not one of emccd, scmos, ccd")
    values: dict = {"kind": kind.strip().lower()}
    for k, v in cam.items():
        if k == "kind":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            unit = f" ({_UNITS[k]})" if _UNITS.get(k) else ""
            raise _profile_error(p, f"{prefix}{k}: must be a finite number{unit}, got {v!r}")
        values[k] = float(v)
    values.setdefault("spurious_charge", 0.0)
    from .validate import ParameterError

    try:
        camera = Camera(**values)
    except ParameterError as exc:
        field_name = exc.name.split(".")[-1]
        raise _profile_error(p, f"{prefix}{field_name} = {exc.value!r}: must be {exc.allowed}") from None
    guessed = doc.get("guessed") or ()
    if not isinstance(guessed, (list, tuple)) or not all(isinstance(g, str) for g in guessed):
        raise _profile_error(p, f"guessed: must be a list of field names, got {guessed!r}")
    estimate = doc.get("estimate") or {}
    if not isinstance(estimate, dict):
        raise _profile_error(p, f"estimate: must be a mapping, got {type(estimate).__name__}")
    name = doc.get("name", p.stem)
    notes = doc.get("notes", "")
    return CameraProfile(
        name=str(name) if name is not None else p.stem, camera=camera, guessed=tuple(guessed), estimate=estimate,
        notes=str(notes or ""), path=str(p),
    )


def load_camera_profile(path: str | os.PathLike) -> Camera:
    """The :class:`Camera` of a camera profile YAML; see :func:`read_camera_profile`."""
    return read_camera_profile(path).camera


def _plain(value):
    """YAML-safe plain data: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def save_camera_profile(
    camera: Camera | str | dict,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    guessed: tuple | list = (),
    estimate: dict | None = None,
    notes: str = "",
    overwrite: bool = False,
    inputs: tuple = (),
    remedy: str = "choose another name or pass --overwrite",
) -> Path:
    """Write a camera profile YAML that :func:`read_camera_profile` reads back to the same Camera.

    Never replaces an existing file unless ``overwrite`` (and never one of ``inputs``); the
    write is atomic (:func:`~napari_smlm.core.io.safe.atomic_path`).

    Parameters
    ----------
    camera : Camera, preset name or dict
    path : path-like
        The ``.yaml`` / ``.yml`` file to write.
    name : str, optional
        The profile's name (default: the file's stem).
    guessed : sequence of str
        Fields that were not measured.
    estimate : dict, optional
        How the values were measured (:meth:`CameraEstimate.to_dict`).
    notes : str
    overwrite : bool
    inputs : tuple of path-like
        Files the caller read (e.g. the movie): never written over.
    remedy : str
        What the refusal of an existing file tells the user to do (the CLI's default names
        ``--overwrite``; the GUI, which has no such option, says what to do there).

    Returns
    -------
    Path
    """
    import yaml

    from .. import __version__
    from .io.safe import atomic_path, check_output

    p = Path(path).expanduser()
    if p.suffix.lower() not in PROFILE_SUFFIXES:
        raise _profile_error(p, "a camera profile file name ends in .yaml or .yml")
    check_output(p, inputs=inputs, overwrite=overwrite, what="camera profile", remedy=remedy)
    cam = get_camera(camera)
    doc = {
        PROFILE_KEY: PROFILE_VERSION,
        "name": name or p.stem,
        "camera": _plain(cam.to_dict()),
        "guessed": list(guessed),
    }
    if notes:
        doc["notes"] = notes
    if estimate:
        doc["estimate"] = _plain(estimate)
    doc["napari_smlm_version"] = __version__
    text = "# napari-smlm camera profile: baseline ADU, sensitivity e-/ADU (before EM gain), read_noise e- RMS\n"
    text += yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    with atomic_path(p) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return p
