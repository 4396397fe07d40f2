"""File input/output: lazy TIFF movies and localization tables.

No torch, no Qt: importable from the napari reader's cheap path.
"""

from .errors import SMLMFileError
from .locs import (
    FORMATS,
    LOCALIZATION_SUFFIXES,
    LocFormat,
    detect_format,
    is_localization_file,
    picasso_yaml_path,
    read_decode_csv,
    read_decode_h5,
    read_localizations,
    read_picasso_hdf5,
    read_smlm2016_csv,
    read_thunderstorm_csv,
    write_localizations,
    write_picasso_hdf5,
    write_thunderstorm_csv,
)
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
    "picasso_yaml_path",
    "read_localizations",
    "write_localizations",
    "read_thunderstorm_csv",
    "write_thunderstorm_csv",
    "read_picasso_hdf5",
    "write_picasso_hdf5",
    "read_smlm2016_csv",
    "read_decode_h5",
    "read_decode_csv",
]
