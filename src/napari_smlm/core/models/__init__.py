"""Model registry: ``{name: ModelFamily subclass}``.

Families register with :func:`register`; :func:`get_family` builds one by name. The
registry is filled lazily on first use so that importing this package stays cheap.
"""

from __future__ import annotations

import importlib
import logging

from .base import Batch, ModelFamily, PostprocessResult

__all__ = ["Batch", "ModelFamily", "PostprocessResult", "REGISTRY", "register", "get_family", "available_models"]

log = logging.getLogger(__name__)

REGISTRY: dict[str, type[ModelFamily]] = {}
_FAMILY_MODULES = ("napari_smlm.core.models.density", "napari_smlm.core.models.decode")
_loaded = False


def register(cls: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator adding a family to :data:`REGISTRY` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _FAMILY_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a family not built yet must not break the others
            if exc.name != mod:
                raise
            log.debug("model module %s not present", mod)


def available_models() -> dict[str, str]:
    """``{name: one-line description}`` of every registered family."""
    _load_all()
    return {k: REGISTRY[k].description for k in sorted(REGISTRY)}


def get_family(name: str, config: dict | None = None) -> ModelFamily:
    """Instantiate the family registered as ``name`` with ``config``."""
    _load_all()
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {sorted(REGISTRY)}") from None
    return cls(config)
