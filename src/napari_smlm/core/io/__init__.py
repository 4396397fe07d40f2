"""File input/output: lazy TIFF movies and localization tables.

Localization formats live in :mod:`.formats`, one module per format plus a registry
(detection, suffixes, reader and writer dispatch); adding a format is one new module
there plus its name in ``formats.MODULES``.

No torch, no Qt: importable from the napari reader's cheap path.
"""

from .errors import SMLMFileError
from .formats import (
    FORMATS,
    LOCALIZATION_SUFFIXES,
    LocFormat,
    claims_file,
    detect_format,
    is_localization_file,
    read_localizations,
    write_localizations,
)
from .formats.decode import read_decode_csv, read_decode_h5
from .formats.nairr import read_nairr_csv
from .formats.picasso import picasso_yaml_path, read_picasso_hdf5, write_picasso_hdf5
from .formats.smlm2016 import read_smlm2016_csv, write_smlm2016_csv
from .formats.storm_analysis import read_storm_analysis_h5
from .formats.thunderstorm import read_thunderstorm_csv, write_thunderstorm_csv
from .tiff import TIFF_SUFFIXES, Movie, open_movie, read_image, write_image, write_movie

__all__ = [
    "SMLMFileError",
    "Movie",
    "open_movie",
    "write_movie",
    "write_image",
    "read_image",
    "TIFF_SUFFIXES",
    "FORMATS",
    "LOCALIZATION_SUFFIXES",
    "LocFormat",
    "detect_format",
    "is_localization_file",
    "claims_file",
    "picasso_yaml_path",
    "read_localizations",
    "write_localizations",
    "read_thunderstorm_csv",
    "write_thunderstorm_csv",
    "read_picasso_hdf5",
    "write_picasso_hdf5",
    "read_smlm2016_csv",
    "write_smlm2016_csv",
    "read_decode_h5",
    "read_decode_csv",
    "read_nairr_csv",
    "read_storm_analysis_h5",
]
