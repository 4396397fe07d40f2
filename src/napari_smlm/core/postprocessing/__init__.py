"""Post-processing of a localization table: drift, merging, filtering, resolution.

Each step is a function on a :class:`~napari_smlm.core.localizations.Localizations` table;
the long ones also exist as ``iter_*`` generators that yield
:class:`~napari_smlm.core.postprocessing._common.Progress` and their result last (CLI, widget
and tests drain the same generators). No torch, no Qt.

* :mod:`.drift` — drift correction: the sign convention and every drift name, gathered from
  :mod:`.drift_table` (the per-frame table, applying it), :mod:`.drift_rcc` (RCC, Wang et al. 2014)
  and :mod:`.drift_fiducials` (fiducial markers).
* :mod:`.linking` — merging a molecule's localizations in consecutive frames.
* :mod:`.filtering` — column ranges and ROI.
* :mod:`.pixel_locking` — removing the pull toward pixel centres (sub-pixel histogram equalisation);
  its diagnostic (sub-pixel histograms, flatness test, region guard) is :mod:`.subpixel`.
* :mod:`.resolution` — FRC (Nieuwenhuizen et al. 2013) and NeNA (Endesfelder et al. 2014).
* :mod:`.pipeline` — all of them in order, with one configuration.
"""

from ._common import Progress, drain
from .drift import DriftResult, apply_drift, auto_segments, fiducial_drift, find_fiducials, iter_fiducial_drift, iter_rcc, rcc
from .filtering import filter_localizations, filter_mask, narrow_range, parse_filter_spec
from .linking import iter_link, link, link_groups, linking_scores, merge_groups, on_events
from .pixel_locking import PixelLockingResult, PixelLockingWarning, SubpixelDistribution, correct_pixel_locking, subpixel_distribution
from .pipeline import PostprocessConfig, PostprocessResult, iter_postprocess, postprocess
from .resolution import FRCResult, NeNAResult, adjacent_frame_distances, frc, frc_halves, nena

__all__ = [
    "Progress",
    "drain",
    "DriftResult",
    "apply_drift",
    "auto_segments",
    "iter_rcc",
    "rcc",
    "iter_fiducial_drift",
    "fiducial_drift",
    "find_fiducials",
    "filter_localizations",
    "filter_mask",
    "narrow_range",
    "parse_filter_spec",
    "iter_link",
    "link",
    "link_groups",
    "merge_groups",
    "linking_scores",
    "on_events",
    "PixelLockingResult",
    "PixelLockingWarning",
    "SubpixelDistribution",
    "correct_pixel_locking",
    "subpixel_distribution",
    "PostprocessConfig",
    "PostprocessResult",
    "iter_postprocess",
    "postprocess",
    "FRCResult",
    "NeNAResult",
    "frc",
    "frc_halves",
    "nena",
    "adjacent_frame_distances",
]
