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

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

__all__ = ["Camera", "CAMERA_PRESETS", "get_camera", "estimate_baseline_adu"]


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

    @property
    def excess_noise(self) -> float:
        """Excess noise factor F used in the CRLB: 2 with EM gain, 1 otherwise."""
        return 2.0 if self.em_gain > 1 else 1.0

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


def get_camera(name_or_camera: str | Camera | dict) -> Camera:
    """Resolve a preset name, a dict or a :class:`Camera`."""
    if isinstance(name_or_camera, Camera):
        return name_or_camera
    if isinstance(name_or_camera, dict):
        return Camera.from_dict(name_or_camera)
    try:
        return CAMERA_PRESETS[name_or_camera]
    except KeyError:
        raise ValueError(f"unknown camera preset {name_or_camera!r}; known: {sorted(CAMERA_PRESETS)}") from None


def estimate_baseline_adu(frames, percentile: float = 1.0) -> float:
    """Camera offset estimate (ADU): a low percentile of a few frames.

    The darkest pixels of a frame get (almost) no fluorescence, so their value is the offset
    plus a little background. This overestimates the offset when every pixel sees background
    (then prefer the camera's specification sheet); it never needs dark frames.
    """
    a = np.asarray(frames, dtype=np.float32)
    return float(np.percentile(a[np.isfinite(a)], percentile))
