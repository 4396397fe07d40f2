"""Compatibility module: the localization formats now live in :mod:`.formats`, one module
per format (see that package's docstring for the conventions and how to add a format).

Kept so that ``from napari_smlm.core.io.locs import read_localizations`` (CLI, widgets,
scripts written against earlier versions) keeps working; new code imports from
:mod:`napari_smlm.core.io`.
"""

from __future__ import annotations

from .formats import (
    FORMATS,
    LOCALIZATION_SUFFIXES,
    LocFormat,
    detect_format,
    is_localization_file,
    read_localizations,
    write_localizations,
)
from .formats.decode import read_decode_csv, read_decode_h5
from .formats.nairr import read_nairr_csv
from .formats.picasso import picasso_yaml_path, read_picasso_hdf5, write_picasso_hdf5
from .formats.smlm2016 import read_smlm2016_csv
from .formats.storm_analysis import read_storm_analysis_h5
from .formats.thunderstorm import read_thunderstorm_csv, write_thunderstorm_csv

__all__ = [
    "LocFormat",
    "FORMATS",
    "LOCALIZATION_SUFFIXES",
    "read_thunderstorm_csv",
    "write_thunderstorm_csv",
    "read_picasso_hdf5",
    "write_picasso_hdf5",
    "picasso_yaml_path",
    "read_smlm2016_csv",
    "read_nairr_csv",
    "read_decode_h5",
    "read_decode_csv",
    "read_storm_analysis_h5",
    "detect_format",
    "is_localization_file",
    "read_localizations",
    "write_localizations",
]
