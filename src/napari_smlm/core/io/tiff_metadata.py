"""Pixel size from a TIFF file's own metadata (part of :mod:`napari_smlm.core.io.tiff`).

In this order: the ``pixel_size_nm`` key of a JSON description written by
:func:`~napari_smlm.core.io.tiff.write_movie`; OME-XML ``PhysicalSizeX`` (unit converted to nm);
ImageJ ``unit=`` with the ``XResolution`` tag; a plain TIFF ``ResolutionUnit`` (cm / inch) with
``XResolution`` when the result is a plausible microscope pixel (1 nm to 100 µm, so the ubiquitous
72 dpi is ignored); else ``None``. Used by the movie reader and by
:func:`~napari_smlm.core.io.tiff.read_image`. Also what an OME file's channels are
(:func:`_ome_unlabelled_channels`: tifffile's label of a plain stack, or real channels).
"""

from __future__ import annotations

import codecs
import logging
import math
import xml.etree.ElementTree as ET
from typing import Any

import tifffile

logger = logging.getLogger("napari_smlm.core.io.tiff")  # the records keep the name they had before the split

# Length units seen in OME-XML / ImageJ descriptions / TIFF tags, in nm per unit.
_UNIT_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,  # micro sign U+00B5
    "μm": 1e3,  # greek mu U+03BC
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mum": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "å": 0.1,
    "angstrom": 0.1,
    "pm": 1e-3,
    "inch": 2.54e7,
    "in": 2.54e7,
}
# Plausible camera-pixel sizes projected to the sample (nm); outside: ignore the tags.
_PLAUSIBLE_PX_NM = (1.0, 1e5)


def _unit_to_nm(unit: Any) -> float | None:
    """nm per ``unit`` or None when the unit is unknown / not a length."""
    if unit is None:
        return None
    u = str(unit).strip()
    if "\\u" in u:  # ImageJ writes 'unit=\u00B5m' literally
        try:
            u = codecs.decode(u, "unicode_escape")
        except UnicodeDecodeError:
            pass
    return _UNIT_NM.get(u.lower()) or _UNIT_NM.get(u)


def _plausible(px: float | None) -> float | None:
    if px is None or not math.isfinite(px):
        return None
    return float(px) if _PLAUSIBLE_PX_NM[0] <= px <= _PLAUSIBLE_PX_NM[1] else None


def _ome_pixel_size_nm(ome_xml: str | None) -> float | None:
    """``PhysicalSizeX`` of the first OME ``Pixels`` element, in nm."""
    if not ome_xml:
        return None
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        logger.debug("unparseable OME-XML; ignoring it for the pixel size")
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Pixels":
            val = el.get("PhysicalSizeX")
            if val is None:
                return None
            scale = _unit_to_nm(el.get("PhysicalSizeXUnit", "µm"))
            try:
                return float(val) * scale if scale else None
            except ValueError:
                return None
    return None


#: Channel attributes that say what a channel is (a dye, a colour, a wavelength, a contrast method).
_OME_CHANNEL_FACTS = (
    "Name", "Color", "Fluor", "EmissionWavelength", "ExcitationWavelength", "ContrastMethod", "IlluminationType",
    "AcquisitionMode", "NDFilter", "PockelCellSetting",
)


def _ome_unlabelled_channels(ome_xml: str | None) -> bool:
    """True when the OME channels of the first image are tifffile's default label of a grayscale stack.

    ``tifffile.imwrite(path, frames, ome=True)`` without ``axes`` labels any ``(N, H, W)`` stack as
    ``N`` channels (``SizeC=N``, one sample each), with nothing saying what a channel is. Such a file is
    frames. A file that another program wrote (Bio-Formats, Fiji, a microscope: ``Creator`` is not
    tifffile), or whose channels carry a name, colour, dye or wavelength, or more than one sample per
    pixel (RGB), holds real channels.
    """
    if not ome_xml:
        return False
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return False
    if not str(root.get("Creator", "")).lower().startswith("tifffile"):
        return False
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return False
    for ch in pixels:
        if ch.tag.rsplit("}", 1)[-1] != "Channel":
            continue
        if any(ch.get(a) not in (None, "") for a in _OME_CHANNEL_FACTS):
            return False
        if ch.get("SamplesPerPixel") not in (None, "1"):
            return False
    return True


def _pixel_size_from_tiff(tif: tifffile.TiffFile) -> tuple[float | None, str | None]:
    """(pixel size in nm, where it came from) from the file's own metadata."""
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    # 1. our own JSON description
    shaped = tif.shaped_metadata if tif.is_shaped else None
    if shaped:
        v = shaped[0].get("pixel_size_nm")
        if isinstance(v, (int, float)) and v > 0:
            return float(v), "description"
    # 2. OME-XML
    if tif.is_ome:
        v = _ome_pixel_size_nm(tif.ome_metadata)
        if v:
            return v, "ome"
    try:
        xres = page.resolution[0]
    except Exception:  # noqa: BLE001 - missing/odd tags: no pixel size from tags
        xres = None
    # 3. ImageJ: unit in the description, XResolution in pixels per unit
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        scale = _unit_to_nm(ij.get("unit"))
        if scale and xres:
            return scale / xres, "imagej"
    # 4. plain TIFF resolution tags
    if xres:
        unit = int(page.resolutionunit)
        scale = {2: 2.54e7, 3: 1e7}.get(unit)  # INCH, CENTIMETER
        if scale:
            v = _plausible(scale / xres)
            if v:
                return v, "resolution"
            logger.debug("ignoring implausible TIFF resolution %s px/unit (unit %s)", xres, unit)
    return None, None
