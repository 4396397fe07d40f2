"""napari-smlm: deep-learning single-molecule localization microscopy for napari.

Importing the package is cheap: no torch, no Qt. The numerical core lives in
:mod:`napari_smlm.core`; the napari adapter in the private ``_*`` modules and ``widgets``.
"""

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-smlm")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.1.0.dev0"

__all__ = ["__version__"]
