"""Model registry: ``{name: ModelFamily subclass}``.

Families register with :func:`register`; :func:`get_family` builds one by name. The
registry is filled lazily on first use so that importing this package stays cheap.

Layout: :mod:`.base` (the :class:`ModelFamily` interface), :mod:`.peaks` (the one local-maximum
rule) and, per family, one module plus its helpers named after it — ``density.py`` (the
Deep-STORM-like families) with ``density_nets.py``, ``density_targets.py``,
``density_loss.py`` and ``density_post.py``; ``decode.py`` with ``decode_loss.py`` and
``decode_post.py``. Nothing family-specific lives outside this package.

How to add a model family
-------------------------
1. Write **one new module** ``core/models/<name>.py`` (helpers, if any, beside it as
   ``<name>_*.py``) with a subclass of :class:`ModelFamily` decorated with :func:`register`:

   - ``name``, ``description``, ``context`` (frames on each side the network sees);
   - ``default_config()``: every setting needed to rebuild the network (it goes into
     checkpoints, which store the registry name and this config, never module paths);
   - ``config_for_simulation(sim)``: the settings that depend on the microscope (camera, PSF,
     photons, background, pixel size), ``{}`` if none; ``configure_for`` applies them, without
     touching keys the user set, before :func:`~napari_smlm.core.training.iter_train` trains a
     new network;
   - ``build()``: the ``torch.nn.Module``;
   - ``simulate_batch(sim, batch_size, rng, device, randomize)`` (use
     :func:`~napari_smlm.core.simulate.simulate_crops` for short movies) and, to train on a
     user's movie + localizations, ``batch_from_data(photons, ground_truth, pixel_size_nm, bg)``;
   - ``loss(output, batch)``; ``preprocess(photons)``;
     ``postprocess(output, frame_indices, pixel_size_nm, threshold, want_images)`` returning a
     :class:`PostprocessResult` (use :func:`.peaks.local_maxima` for candidates).
2. **Register** the module: add ``"<registry name>": "<its import path>"`` for each family it
   defines to ``_FAMILY_MODULES`` below (loading a checkpoint imports only its family's
   module; ``tests/test_model_families.py`` checks that the map matches the registry).

Training, streaming inference, checkpoints, the CLI (``napari-smlm models``, ``train --model``)
and the Training widget's model list all go through the registry, so nothing else changes. Add ``tests/test_<name>.py`` with a
tiny config (forward shapes, loss falls, ``simulate_batch`` ground truth);
``tests/test_model_families.py`` checks every registered family's ``config_for_simulation``.
"""

from __future__ import annotations

import importlib
import logging

from .base import Batch, ModelFamily, PostprocessResult

__all__ = ["Batch", "ModelFamily", "PostprocessResult", "REGISTRY", "register", "get_family", "family_class", "available_models"]

log = logging.getLogger(__name__)

REGISTRY: dict[str, type[ModelFamily]] = {}
#: Registry name -> the module that registers it. :func:`get_family` imports only the module of
#: the family it is asked for (a ``decode`` checkpoint loads without the density networks, the
#: 3-D family, the astigmatic calibration and scipy); :func:`available_models` imports them all.
_FAMILY_MODULES: dict[str, str] = {
    "deep-storm": "napari_smlm.core.models.density",
    "srcnn": "napari_smlm.core.models.density",
    "skip-storm": "napari_smlm.core.models.density",
    "u-storm": "napari_smlm.core.models.density",
    "drl-storm": "napari_smlm.core.models.density",
    "fid-storm": "napari_smlm.core.models.density",
    "decode": "napari_smlm.core.models.decode",
    "decode3d": "napari_smlm.core.models.decode3d",
}
_loaded = False


def register(cls: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator adding a family to :data:`REGISTRY` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    REGISTRY[cls.name] = cls
    return cls


def _import_family_module(mod: str) -> None:
    try:
        importlib.import_module(mod)
    except ModuleNotFoundError as exc:  # a family not built yet must not break the others
        if exc.name != mod:
            raise
        log.debug("model module %s not present", mod)


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in dict.fromkeys(_FAMILY_MODULES.values()):
        _import_family_module(mod)


def family_class(name: str) -> type[ModelFamily]:
    """The :class:`ModelFamily` subclass registered as ``name``, importing only its module.

    Raises
    ------
    ValueError
        No family of that name (the message lists the known ones).
    """
    cls = REGISTRY.get(name)
    if cls is None and name in _FAMILY_MODULES:
        _import_family_module(_FAMILY_MODULES[name])
        cls = REGISTRY.get(name)
    if cls is None:  # a family outside the map (registered by a plug-in module): look everywhere
        _load_all()
        cls = REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown model {name!r}; available: {sorted(REGISTRY)}")
    return cls


def available_models() -> dict[str, str]:
    """``{name: one-line description}`` of every registered family."""
    _load_all()
    return {k: REGISTRY[k].description for k in sorted(REGISTRY)}


def get_family(name: str, config: dict | None = None) -> ModelFamily:
    """Instantiate the family registered as ``name`` with ``config`` (imports only its module)."""
    return family_class(name)(config)
