"""Localization and image quality metrics, and the one evaluation used everywhere.

=====================  ==========================================================================
module                 contents
=====================  ==========================================================================
``metrics.matching``   per-frame matching (greedy / Hungarian), Jaccard, RMSE, bias, efficiency
``metrics.crlb``       Mortensen CRLB, and RMSE next to CRLB on the same emitters
``metrics.fisher``     numerical Fisher-information CRLB of any PSF model (x, y, z, N, bg)
``metrics.image``      NMSE, PSNR, SSIM, Pearson of two images on the same grid
``metrics.report``     :func:`evaluation_report` and :func:`compare_images`: what the CLI, the
                       widgets and the benchmarks call
=====================  ==========================================================================

Every public name is importable from ``napari_smlm.core.metrics`` directly. Matching the
81,178 positions of the EPFL "Bundled Tubes" test set against a prediction of similar size
takes a fraction of a second.
"""

from napari_smlm.core.metrics.crlb import (
    crlb_for_localizations,
    crlb_mortensen,
    mean_crlb,
    mortensen_integral,
    rmse_vs_crlb,
)
from napari_smlm.core.metrics.fisher import crlb_astigmatic, crlb_fisher, fisher_information, rmse_vs_crlb_3d
from napari_smlm.core.metrics.image import NORMALIZATIONS, nmse, pearson, psnr, ssim
from napari_smlm.core.metrics.matching import (
    MATCHING_METHODS,
    LocalizationMetrics,
    Matching,
    efficiency,
    evaluate,
    match_localizations,
)
from napari_smlm.core.metrics.report import EvaluationReport, compare_images, evaluation_report, recorded_camera

__all__ = [
    "MATCHING_METHODS",
    "NORMALIZATIONS",
    "Matching",
    "LocalizationMetrics",
    "EvaluationReport",
    "match_localizations",
    "evaluate",
    "efficiency",
    "evaluation_report",
    "compare_images",
    "recorded_camera",
    "mortensen_integral",
    "crlb_mortensen",
    "crlb_for_localizations",
    "mean_crlb",
    "rmse_vs_crlb",
    "fisher_information",
    "crlb_fisher",
    "crlb_astigmatic",
    "rmse_vs_crlb_3d",
    "nmse",
    "psnr",
    "ssim",
    "pearson",
]
