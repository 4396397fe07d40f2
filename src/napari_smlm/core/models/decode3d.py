"""DECODE-like 3-D model for astigmatic SMLM: the 2-D family plus a z head and its uncertainty.

Written from the description of DECODE's 3-D model (Speiser et al., *Nat. Methods* 18, 1082
(2021)); no code of the reference implementation is used.

What changes against the 2-D family (:mod:`.decode`, whose network, normalisation, training
randomisation and spatial integration are reused as they are):

* **Two more heads**, registered in :data:`.decode.HEADS`:

  ========== ============================================= ==================
  channel    meaning                                       activation
  ========== ============================================= ==================
  z          axial position, normalised: ``(z − c) / h``   tanh, in (−1, 1)
  sigma_z    its predicted uncertainty, same units          sigmoid + 0.005
  ========== ============================================= ==================

  with ``c`` the centre and ``h`` the half-width of the model's ``z_range_nm`` (by default
  the calibration's usable range). Post-processing turns them into ``z_nm`` and
  ``sigma_z_nm`` (nm; ThunderSTORM ``z [nm]`` / ``uncertainty_z [nm]``).
* **z in the mixture loss** (:mod:`.decode3d_loss`): the per-pixel Gaussian mixture is over
  (x, y, z, N).
* **The PSF is part of the model**: ``config["psf_calibration"]`` (an
  :class:`~napari_smlm.core.calibration.AstigmaticCalibration` as a plain dict) is the
  calibration the network is trained on, so it is stored in every checkpoint, and training
  on a 2-D :class:`~napari_smlm.core.config.SimulationConfig` simulates with it. A new model
  trained on a 3-D simulation takes that simulation's calibration
  (:meth:`Decode3DFamily.config_for_simulation`); fine-tuning to a user's calibration passes
  :meth:`Decode3DFamily.calibration_overrides` as the model config.
* Per batch, the calibration's widths are scaled by ``1 ± calibration_jitter`` (one factor for
  both axes), so that a calibration a few per cent off does not derail the network.
* **Test-time symmetrisation** (``symmetrize``, on by default; :class:`Decode3DNet`): in eval
  mode the maps are the mean of the network on the frames and on the frames rotated by 180°
  (rotated back, offsets negated). The rotation keeps the astigmatic ellipse's axes, so z is
  unchanged, and a constant offset error of the network cancels: on a symmetric grid of round
  spots (z = 0, 256 emitters) the shipped weights' (x, y) bias went from (−6.9, −7.6) nm to
  (−1.3, 0.1) nm, standard errors 1.1 / 0.6 nm (``tests/test_decode3d.py``). Twice the
  arithmetic at inference; training is unchanged.

The default calibration (``napari_smlm/data/astigmatic_default.yaml``, :func:`default_calibration`)
is a generic cylindrical-lens PSF: σx, σy of 130 / 140 nm at focal planes 500 nm apart, round
(160 nm) at z = 0, usable over ±600 nm.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..calibration import AstigmaticCalibration
from ..config import SimulationConfig
from ..localizations import Localizations
from ..tta import mirror_back
from . import register
from .base import Batch, PostprocessResult
from .decode import HEADS, DecodeFamily, DecodeNet
from .decode3d_loss import decode3d_loss

__all__ = ["Decode3DFamily", "Decode3DNet", "default_calibration", "DEFAULT_CALIBRATION_PATH"]

log = logging.getLogger(__name__)

#: The generic astigmatic calibration shipped with the package (YAML).
DEFAULT_CALIBRATION_PATH = Path(__file__).resolve().parents[2] / "data" / "astigmatic_default.yaml"

_SIGMA_Z_MIN = 0.005  # normalised units: 3 nm for a ±600 nm range


def _head_z(x, cfg):
    return torch.tanh(x)


def _head_sigma_z(x, cfg):
    return torch.sigmoid(x) + _SIGMA_Z_MIN


HEADS.setdefault("z", (("z",), _head_z, 0.0))
HEADS.setdefault("sigma_z", (("sigma_z",), _head_sigma_z, -2.0))


class Decode3DNet(DecodeNet):
    """:class:`.DecodeNet` averaged with its 180°-rotated self in eval mode (``config["symmetrize"]``).

    The state dict is :class:`.DecodeNet`'s, so checkpoints do not depend on the option.
    """

    def __init__(self, config: dict):
        super().__init__(config)
        self.symmetrize = bool(config.get("symmetrize", True))
        self._x_channels = [k for k, c in enumerate(self.channels) if c == "dx"]
        self._y_channels = [k for k, c in enumerate(self.channels) if c == "dy"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training or not self.symmetrize:
            return out
        # offsets point the other way in the rotated frame (core/tta.py: the one home of that rule)
        rot = mirror_back(super().forward(x.flip(-2, -1)), (-2, -1), self._x_channels, self._y_channels)
        return 0.5 * (out + rot)


@functools.lru_cache(maxsize=1)
def _default_calibration_dict() -> dict:
    return AstigmaticCalibration.load(DEFAULT_CALIBRATION_PATH).to_dict()


def default_calibration() -> AstigmaticCalibration:
    """The generic astigmatic calibration the shipped ``decode3d`` weights were trained on.

    Returns
    -------
    AstigmaticCalibration
        Read from :data:`DEFAULT_CALIBRATION_PATH` (``yaml.safe_load``): σx(z), σy(z) in nm,
        usable range −600 … 600 nm.
    """
    data = copy.deepcopy(_default_calibration_dict())
    return AstigmaticCalibration.from_dict(data, where=str(DEFAULT_CALIBRATION_PATH))


@register
class Decode3DFamily(DecodeFamily):
    """DECODE-like 3-D model: the 2-D family's maps plus z and σz, trained on an astigmatic PSF."""

    name = "decode3d"
    description = "DECODE-like 3-D (astigmatic PSF): + z head and its uncertainty, trained for a PSF calibration"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        cfg = super().default_config()
        cal = _default_calibration_dict()
        cfg.update(
            heads=[*cfg["heads"], "z", "sigma_z"],
            # the PSF the network is trained on (an AstigmaticCalibration as a dict) and the z
            # range (nm) its z head spans: tanh output -1..1 <-> z_range_nm[0]..[1]
            psf_calibration=copy.deepcopy(cal),
            z_range_nm=[float(v) for v in cal["z_range_nm"]],
            calibration_jitter=0.03,
            # eval-mode mean with the 180°-rotated frames (Decode3DNet): cancels a position bias
            symmetrize=True,
        )
        return cfg

    # ------------------------------------------------------------------ microscope / PSF
    @classmethod
    def calibration_overrides(cls, calibration: Any) -> dict[str, Any]:
        """Model-config entries that make the model use ``calibration`` (fine-tuning to a PSF).

        Parameters
        ----------
        calibration : AstigmaticCalibration, dict or path of its YAML

        Returns
        -------
        dict
            ``psf_calibration`` (dict) and ``z_range_nm`` (the calibration's usable range, nm).
        """
        cal = AstigmaticCalibration.coerce(calibration)
        return {"psf_calibration": cal.to_dict(), "z_range_nm": [float(v) for v in cal.z_range_nm]}

    @classmethod
    def config_for_simulation(cls, sim: SimulationConfig) -> dict[str, Any]:
        """The 2-D family's scales, with the peak pixel of the round PSF (z = 0), and the PSF.

        For a 3-D ``sim`` (``psf_calibration`` set) the model takes its calibration and its z
        range (nm); for a 2-D one it keeps its own calibration.
        """
        upd = super().config_for_simulation(sim)
        if sim.is_3d:
            cal = AstigmaticCalibration.coerce(sim.psf_calibration)
            upd["psf_calibration"] = cal.to_dict()
            upd["z_range_nm"] = [float(v) for v in sim.z_range_nm]
        else:
            cal = default_calibration()
        sx, sy = (float(s) / float(sim.pixel_size_nm) for s in cal.sigmas_nm(0.0))
        upd["input_scale"] = float(max(sim.photons_mean / (2 * math.pi * sx * sy), 1.0))
        return upd

    @property
    def calibration(self) -> AstigmaticCalibration:
        """The PSF calibration this model is (being) trained on."""
        return AstigmaticCalibration.from_dict(copy.deepcopy(self.config["psf_calibration"]), where="decode3d config")

    def _z_centre_half(self) -> tuple[float, float]:
        lo, hi = (float(v) for v in self.config["z_range_nm"])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"decode3d: z_range_nm must be [low, high] with low < high (nm), got {self.config['z_range_nm']}"
            )
        return 0.5 * (lo + hi), 0.5 * (hi - lo)

    def normalise_z(self, z_nm: Any) -> np.ndarray:
        """z (nm) → the z head's units, ``(z − centre) / half_range``."""
        c, h = self._z_centre_half()
        return (np.asarray(z_nm, dtype=np.float64) - c) / h

    def training_simulation(self, sim: SimulationConfig, rng: np.random.Generator | None = None) -> SimulationConfig:
        """``sim`` with this model's PSF and z range (what a training batch is simulated with).

        A 2-D ``sim`` gets the model's calibration; a 3-D one keeps its own. The emitters' z range
        is clipped to the model's ``z_range_nm`` (the z head cannot report beyond it). With
        ``rng``, both widths are scaled by one factor ``1 + U(−j, j)``, ``j = calibration_jitter``.
        """
        cal = sim.psf_calibration if sim.is_3d else self.config["psf_calibration"]
        lo_m, hi_m = (float(v) for v in self.config["z_range_nm"])
        if sim.is_3d:
            lo, hi = sim.z_range_nm
        else:
            lo, hi = (float(v) for v in AstigmaticCalibration.coerce(copy.deepcopy(cal)).z_range_nm)
        lo, hi = max(lo, lo_m), min(hi, hi_m)
        if not lo < hi:
            raise ValueError(
                f"decode3d: the simulation's z range {sim.z_range_nm} nm does not overlap the model's z_range_nm "
                f"{self.config['z_range_nm']}; fine-tune with the calibration's overrides (calibration_overrides)"
            )
        j = float(self.config.get("calibration_jitter", 0.0))
        if rng is not None and j > 0:
            f = 1.0 + float(rng.uniform(-j, j))
            cal = copy.deepcopy(cal)
            for ax in ("sigma_x", "sigma_y"):
                cal[ax] = {**cal[ax], "s0_nm": float(cal[ax]["s0_nm"]) * f}
        return sim.replace(psf_calibration=cal, z_min_nm=lo, z_max_nm=hi)

    def build(self) -> torch.nn.Module:
        return Decode3DNet(self.config)

    # ------------------------------------------------------------------ training
    def simulate_batch(
        self,
        sim: SimulationConfig,
        batch_size: int,
        rng: np.random.Generator,
        device: torch.device | str = "cpu",
        randomize: bool = True,
    ) -> Batch:
        """A batch of 3-frame astigmatic crops (see :meth:`.DecodeFamily.simulate_batch`).

        The simulation is :meth:`training_simulation` of ``sim`` (the model's PSF when ``sim``
        is 2-D); the targets add ``z_norm`` (E,) to the 2-D family's, and the ground truth
        ``z_nm``.
        """
        sim = self.training_simulation(sim, rng if randomize else None)
        return super().simulate_batch(sim, batch_size, rng, device=device, randomize=randomize)

    target_columns = (*DecodeFamily.target_columns, "z_nm")

    def batch_from_data(
        self,
        photons: torch.Tensor,
        ground_truth: Localizations,
        pixel_size_nm: float,
        bg: torch.Tensor | None = None,
    ) -> Batch:
        """The 2-D family's targets (:meth:`.DecodeFamily.batch_from_data`) plus ``z_norm`` (E,).

        Raises
        ------
        ValueError
            When the ground truth has emitters but no ``z_nm`` column, or z outside the model's
            ``z_range_nm``.
        """
        if len(ground_truth) and "z_nm" not in ground_truth:
            raise ValueError(
                "decode3d: the ground truth has no z_nm column; a 3-D model needs z (nm) for every emitter"
            )
        batch = super().batch_from_data(photons, ground_truth, pixel_size_nm, bg)
        gt = batch.ground_truth
        z = np.asarray(gt["z_nm"], dtype=np.float64) if (len(gt) and "z_nm" in gt) else np.zeros(len(gt))
        zn = self.normalise_z(z)
        if zn.size and not np.all(np.isfinite(zn)):
            raise ValueError("decode3d: ground-truth z_nm has NaN / inf values")
        batch.targets["z_norm"] = torch.tensor(np.clip(zn, -1.0, 1.0), dtype=torch.float32, device=photons.device)
        return batch

    #: Count + (x, y, z, N) mixture + background, see :func:`.decode3d_loss.decode3d_loss`
    #: (:meth:`DecodeFamily.loss` calls it with the same weights as the 2-D family).
    mixture_loss = staticmethod(decode3d_loss)

    # ------------------------------------------------------------------ inference
    def postprocess(
        self,
        output: torch.Tensor,
        frame_indices,
        pixel_size_nm: float,
        threshold: float | None = None,
        want_images: bool = True,
    ) -> PostprocessResult:
        """The 2-D family's spatial integration, with ``z_nm`` and ``sigma_z_nm`` (nm) columns."""
        c, h = self._z_centre_half()
        names = self.channels
        iz, isz = names.index("z"), names.index("sigma_z")
        out = output.float().clone()
        out[:, iz] = c + h * out[:, iz]
        out[:, isz] = h * out[:, isz]
        return super().postprocess(out, frame_indices, pixel_size_nm, threshold, want_images)
