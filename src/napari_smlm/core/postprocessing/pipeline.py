"""One post-processing pipeline: filter → pixel locking → drift → NeNA → merge → FRC, with its configuration.

The order is fixed because each step needs the previous one: the pixel-locking correction works
in camera coordinates, so before drift correction and merging; drift correction before merging
(a drifting molecule would not merge), NeNA before merging (it needs the repeats of a molecule
in consecutive frames), FRC last (the resolution of the final table). Every step is optional.
The configuration and the results are recorded in the output table's
``meta["postprocessing"]`` so the exported file says how it was made.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..localizations import Localizations
from ._common import Progress, drain
from .drift import DriftResult, apply_drift, iter_fiducial_drift, iter_rcc
from .filtering import filter_localizations
from .linking import iter_link
from .pixel_locking import PixelLockingResult, correct_pixel_locking
from .resolution import FRCResult, NeNAResult, frc, nena

__all__ = ["PostprocessConfig", "PostprocessResult", "iter_postprocess", "postprocess"]

log = logging.getLogger(__name__)


@dataclass
class PostprocessConfig:
    """What to do with a localization table; every step optional.

    Parameters
    ----------
    filter_ranges : dict column -> [low, high]
        Applied first (``None`` bounds are open), see
        :func:`~napari_smlm.core.postprocessing.filtering.filter_localizations`.
    roi_nm : [x0, y0, x1, y1], optional
        Region kept (nm).
    pixel_locking : bool
        Equalise the sub-pixel histogram of x and y (removes the pull toward pixel centres),
        :func:`~napari_smlm.core.postprocessing.pixel_locking.correct_pixel_locking`; needs the
        camera pixel size (``pixel_locking_pixel_nm`` or the table's ``meta["pixel_size_nm"]``).
    pixel_locking_pixel_nm : float, optional
        Camera pixel size (nm) for the correction; default the table's.
    pixel_locking_min_localizations : int
        Fewest localizations the correction accepts.
    pixel_locking_weight : {"none", "precision"}
        ``"precision"``: localizations count ``1/σ²`` in the map (needs ``sigma_x_nm``/``sigma_y_nm``).
    drift : {"none", "rcc", "fiducials"}
    segments : int or None
        RCC time segments; None (default): one per 1000 localizations, 5 to 40 (``auto_segments``),
        fewer (at least 2) below 1000 localizations.
    drift_pixel_nm : float
        RCC render pixel (nm).
    max_drift_nm : float
        RCC: largest shift between segments looked for (nm).
    fiducials_nm : list of [x, y], optional
        Fiducial positions (nm); ``None`` with ``drift="fiducials"``: automatic detection.
    fiducial_radius_nm, fiducial_min_fraction, fiducial_smooth_frames
        See :func:`~napari_smlm.core.postprocessing.drift.iter_fiducial_drift`.
    link : bool
        Merge localizations of one on-event.
    link_distance_nm : float, optional
        Fixed link distance (nm); ``None``: ``link_n_sigma`` × the combined uncertainty.
    link_n_sigma : float
    link_dark_frames : int
        Frames a molecule may be missed within an on-event.
    link_weighting : {"photons", "precision", "uniform"}
    nena : bool
        NeNA precision (of the drift-corrected table before merging).
    nena_max_distance_nm : float
    frc : bool
        FRC resolution of the final table.
    frc_pixel_nm : float
    frc_split : {"blocks", "random"}
    frc_blocks : int
    """

    filter_ranges: dict = field(default_factory=dict)
    roi_nm: list | None = None
    pixel_locking: bool = False
    pixel_locking_pixel_nm: float | None = None
    pixel_locking_min_localizations: int = 2000
    pixel_locking_weight: str = "none"
    drift: str = "none"
    segments: int | None = None
    drift_pixel_nm: float = 20.0
    max_drift_nm: float = 1000.0
    fiducials_nm: list | None = None
    fiducial_radius_nm: float = 500.0
    fiducial_min_fraction: float = 0.5
    fiducial_smooth_frames: int = 10
    link: bool = False
    link_distance_nm: float | None = None
    link_n_sigma: float = 3.0
    link_dark_frames: int = 1
    link_weighting: str = "photons"
    nena: bool = False
    nena_max_distance_nm: float = 200.0
    frc: bool = False
    frc_pixel_nm: float = 5.0
    frc_split: str = "blocks"
    frc_blocks: int = 50

    def __post_init__(self) -> None:
        if self.drift not in ("none", "rcc", "fiducials"):
            raise ValueError(f"drift must be none, rcc or fiducials, not {self.drift!r}")
        if self.segments is not None and self.segments < 2:
            raise ValueError(f"segments must be >= 2, got {self.segments}")
        if self.link_dark_frames < 0:
            raise ValueError(f"link_dark_frames must be >= 0, got {self.link_dark_frames}")
        if self.link_distance_nm is not None and self.link_distance_nm <= 0:
            raise ValueError(f"link_distance_nm must be > 0, got {self.link_distance_nm}")
        if self.link_weighting not in ("photons", "precision", "uniform"):
            raise ValueError(f"link_weighting must be photons, precision or uniform, not {self.link_weighting!r}")
        if self.frc_split not in ("blocks", "random"):
            raise ValueError(f"frc_split must be blocks or random, not {self.frc_split!r}")
        for name in ("drift_pixel_nm", "max_drift_nm", "fiducial_radius_nm", "link_n_sigma", "nena_max_distance_nm",
                     "frc_pixel_nm"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and v != float("inf")):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if not 0 < self.fiducial_min_fraction <= 1:
            raise ValueError(f"fiducial_min_fraction must be in (0, 1], got {self.fiducial_min_fraction}")
        if self.pixel_locking_weight not in ("none", "precision"):
            raise ValueError(f"pixel_locking_weight must be none or precision, not {self.pixel_locking_weight!r}")
        plx = self.pixel_locking_pixel_nm
        if plx is not None and not (isinstance(plx, (int, float)) and 0 < plx < float("inf")):
            raise ValueError(f"pixel_locking_pixel_nm must be a positive number (nm), got {plx!r}")
        if not isinstance(self.pixel_locking_min_localizations, int) or self.pixel_locking_min_localizations < 100:
            raise ValueError(f"pixel_locking_min_localizations must be an integer >= 100, got "
                             f"{self.pixel_locking_min_localizations!r}")
        if not isinstance(self.filter_ranges, dict):
            raise ValueError(f"filter_ranges must map column -> [low, high], got {self.filter_ranges!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PostprocessConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"PostprocessConfig: unknown fields {sorted(unknown)}")
        return cls(**d)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> PostprocessConfig:
        """From a YAML file or YAML text (safe loader: no code runs)."""
        is_text = isinstance(path_or_text, str) and "\n" in path_or_text
        text = path_or_text if is_text else Path(path_or_text).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path_or_text}: expected a mapping of PostprocessConfig fields")
        return cls.from_dict(data)


@dataclass
class PostprocessResult:
    """Outcome of :func:`iter_postprocess`.

    Attributes
    ----------
    localizations : Localizations
        The final table (meta["postprocessing"] lists every step).
    drift : DriftResult or None
    nena : NeNAResult or None
    frc : FRCResult or None
    config : PostprocessConfig
    pixel_locking : PixelLockingResult or None
    n_input : int or None
        Localizations in the table given (before filtering and merging).
    """

    localizations: Localizations
    drift: DriftResult | None
    nena: NeNAResult | None
    frc: FRCResult | None
    config: PostprocessConfig
    pixel_locking: PixelLockingResult | None = None
    n_input: int | None = None

    def summary(self) -> dict:
        """Plain numbers for a report (JSON-safe)."""
        out: dict[str, Any] = {"n_localizations": len(self.localizations), "config": self.config.to_dict()}
        if self.drift is not None:
            dx, dy = self.drift.drift_x_nm, self.drift.drift_y_nm
            out["drift"] = {
                "method": self.drift.method,
                "max_nm": float(max(abs(dx).max(), abs(dy).max())) if len(dx) else 0.0,
                "final_nm": [float(dx[-1]), float(dy[-1])] if len(dx) else [0.0, 0.0],
                **{k: v for k, v in self.drift.info.items() if isinstance(v, (int, float, str, bool))},
            }
        if self.pixel_locking is not None:
            pl = self.pixel_locking
            out["pixel_locking"] = {k: v for k, v in pl.as_dict().items() if k not in ("cdf_x", "cdf_y")}
        if self.nena is not None:
            out["nena"] = self.nena.as_dict()
        if self.frc is not None:
            out["frc"] = self.frc.as_dict()
        return out


def iter_postprocess(locs: Localizations, config: PostprocessConfig) -> Iterator[Progress | PostprocessResult]:
    """Run the configured steps; yields :class:`Progress`, then a :class:`PostprocessResult`."""
    cfg = config
    cur = locs.copy()
    n_frames = locs.meta.get("n_frames")
    cur.meta.setdefault("postprocessing", [])
    if cfg.filter_ranges or cfg.roi_nm is not None:
        yield Progress("filter", 0, 1, "filtering")
        before = cur
        cur = filter_localizations(cur, cfg.filter_ranges, cfg.roi_nm)
        if len(cur) == 0:
            from .filtering import empty_filter_message

            raise ValueError(f"filter: {empty_filter_message(before, cfg.filter_ranges, cfg.roi_nm)}")
        yield Progress("filter", 1, 1, f"{len(locs)} → {len(cur)} localizations")
    pl_res = None
    if cfg.pixel_locking:
        yield Progress("pixel_locking", 0, 1, "pixel-locking correction")
        pl_res = correct_pixel_locking(cur, cfg.pixel_locking_pixel_nm, weight=cfg.pixel_locking_weight,
                                       min_localizations=cfg.pixel_locking_min_localizations)
        cur = pl_res.localizations
        b, a = pl_res.before, pl_res.after
        yield Progress("pixel_locking", 1, 1, f"sub-pixel deviation x {b.deviation_x:.2f} → {a.deviation_x:.2f}, "
                       f"y {b.deviation_y:.2f} → {a.deviation_y:.2f} (noise {b.noise:.2f})")
    drift = None
    if cfg.drift == "rcc":
        gen = iter_rcc(cur, cfg.segments, cfg.drift_pixel_nm, max_drift_nm=cfg.max_drift_nm, n_frames=n_frames)
        for u in gen:
            if isinstance(u, Progress):
                yield u
            else:
                drift = u
    elif cfg.drift == "fiducials":
        gen = iter_fiducial_drift(
            cur, cfg.fiducials_nm, cfg.fiducial_radius_nm, cfg.fiducial_min_fraction,
            smooth_frames=cfg.fiducial_smooth_frames, n_frames=n_frames,
        )
        for u in gen:
            if isinstance(u, Progress):
                yield u
            else:
                drift = u
    if drift is not None:
        cur = apply_drift(cur, drift)
    nena_res = None
    if cfg.nena:
        yield Progress("nena", 0, 1, "NeNA")
        nena_res = nena(cur, cfg.nena_max_distance_nm)
        cur.meta["postprocessing"].append({"step": "nena", **nena_res.as_dict()})
        yield Progress("nena", 1, 1, f"NeNA {nena_res.sigma_nm:.1f} nm")
    if cfg.link:
        for u in iter_link(cur, cfg.link_distance_nm, cfg.link_n_sigma, cfg.link_dark_frames, cfg.link_weighting):
            if isinstance(u, Progress):
                yield u
            else:
                cur = u
    frc_res = None
    if cfg.frc:
        yield Progress("frc", 0, 1, "FRC")
        frc_res = frc(cur, cfg.frc_pixel_nm, cfg.frc_split, cfg.frc_blocks)
        cur.meta["postprocessing"].append({"step": "frc", **frc_res.as_dict()})
        yield Progress("frc", 1, 1, f"FRC {frc_res.resolution_nm:.1f} nm")
    cur.meta["postprocessing_config"] = cfg.to_dict()
    yield PostprocessResult(cur, drift, nena_res, frc_res, cfg, pl_res, n_input=len(locs))


def postprocess(locs: Localizations, config: PostprocessConfig | None = None, **kwargs: Any) -> PostprocessResult:
    """:func:`iter_postprocess` run to the end (``kwargs`` build a config when none is given)."""
    return drain(iter_postprocess(locs, config or PostprocessConfig(**kwargs)))
