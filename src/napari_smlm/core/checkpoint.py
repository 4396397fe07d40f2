"""Checkpoints: one file = weights + model config + simulation/camera config + training record + version.

Files are written with :func:`torch.save` and read with ``torch.load(weights_only=True)``,
which only unpickles tensors and plain containers: **loading never executes code from the
file**. Anything that is not a napari-smlm checkpoint is rejected with a
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import copy
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .config import SimulationConfig
from .device import torch_threads
from .io.safe import atomic_path

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DEFAULT_CAMERA",
    "checkpoint_camera",
    "FORMAT",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "shipped_checkpoint_path",
    "shipped_models",
    "file_sha256",
    "weights_dir",
]

log = logging.getLogger(__name__)

FORMAT = "napari-smlm-checkpoint"
#: Camera preset assumed for a checkpoint that does not record its camera.
DEFAULT_CAMERA = "smlm2016_emccd"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that cannot be used as a napari-smlm checkpoint."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass
class Checkpoint:
    """Everything needed to rebuild and use a trained model.

    Attributes
    ----------
    model : str
        Registry name of the family (``"deep-storm"``, ``"decode"`` ...).
    model_config : dict
        Architecture / normalisation / post-processing settings (``family.config``).
    state_dict : dict
        Network weights.
    simulation : dict
        :class:`SimulationConfig` the model was trained for (its camera included).
    training : dict
        Training record: steps, final / best validation loss, metrics, elapsed time, seed.
    version : str
        Package version that wrote it.
    """

    model: str
    model_config: dict
    state_dict: dict
    simulation: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    version: str = __version__

    @property
    def simulation_config(self) -> SimulationConfig:
        return SimulationConfig.from_dict(self.simulation)

    @property
    def camera(self):
        """The :class:`~napari_smlm.core.camera.Camera` the model was trained for.

        Read from ``simulation["camera"]`` (a preset name or a camera dict); a checkpoint without
        one gets :data:`DEFAULT_CAMERA`.
        """
        return checkpoint_camera(self)

    def family(self):
        """The model family configured as in this checkpoint."""
        from .models import get_family

        return get_family(self.model, self.model_config)

    def __getstate__(self) -> dict:
        """Pickles and copies leave out the network kept from loading (they build their own)."""
        state = dict(self.__dict__)
        state.pop("_spare_net", None)
        return state

    def build(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The network with these weights, in eval mode, on ``device`` (a module of its own).

        Built on one CPU thread: the throw-away random initialisation before the weights are
        loaded (e.g. the density networks' orthogonal QR) is many tiny parallel regions, which took
        1.4-3.7 s with two OpenMP threads on a busy 2-core machine and ~35 ms on one. The first
        call after :func:`load_checkpoint` returns the network that loading built to check the
        weights (unless ``model_config`` or ``state_dict`` were changed since) instead of a second one.
        """
        spare = self.__dict__.pop("_spare_net", None)
        if spare is not None and spare[1] is self.state_dict and spare[2] == self.model_config:
            net = spare[0]
        else:
            with torch_threads(1):
                net = self.family().build()
                net.load_state_dict(self.state_dict)
        return net.to(device).eval()


def checkpoint_camera(ckpt: Checkpoint | None):
    """The camera a checkpoint was trained for (:data:`DEFAULT_CAMERA` when it records none or is None)."""
    from .camera import get_camera

    sim = (ckpt.simulation if ckpt is not None else None) or {}
    return get_camera(sim.get("camera") or DEFAULT_CAMERA)


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically (temporary file + rename: a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": ckpt.version,
        "model": ckpt.model,
        "model_config": _plain(ckpt.model_config),
        "simulation": _plain(ckpt.simulation),
        "training": _plain(ckpt.training),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()},
    }
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as exc:  # torch reports a full disk / size limit as a RuntimeError
            raise OSError(f"{path}: the checkpoint could not be written (disk full?): {exc}") from exc
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint safely (no code execution) and validate it.

    Raises
    ------
    CheckpointError
        Missing file, not a torch file, a pickle that needs code (rejected by
        ``weights_only=True``), or a torch file that is not a napari-smlm checkpoint.
    """
    path = _require_file(Path(path))
    with open(path, "rb") as fh:
        head = fh.read(4)
    # torch.save writes a zip archive (PK..); older torch a pickle (protocol byte 0x80). Anything else
    # (a TIFF, a CSV) would reach torch's unpickler, whose message advises weights_only=False: code execution.
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CheckpointError(path, "not a PyTorch checkpoint (a .pt file written by napari-smlm train)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        log.debug("%s: torch.load(weights_only=True) refused it: %s", path, exc)
        raise CheckpointError(
            path, "refused to load: the file holds Python objects other than tensors and plain data, which could "
            "run code when loaded; use a checkpoint written by napari-smlm train"
        ) from exc
    except Exception as exc:  # zip errors, truncated files, random bytes
        raise CheckpointError(path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, "not a napari-smlm checkpoint (no 'format: napari-smlm-checkpoint' record)")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(path, f"written by a newer napari-smlm ({payload.get('version')}); please upgrade")
    missing = [k for k in ("model", "model_config", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(path, f"checkpoint lacks {missing}")
    from .models import available_models, family_class

    try:  # imports only this family's module (not every model's)
        family_class(str(payload["model"]))
    except ValueError:
        raise CheckpointError(path, f"unknown model {payload['model']!r} (known: {sorted(available_models())})") from None
    ckpt = Checkpoint(
        model=payload["model"],
        model_config=dict(payload["model_config"]),
        state_dict=dict(payload["state_dict"]),
        simulation=dict(payload.get("simulation") or {}),
        training=dict(payload.get("training") or {}),
        version=str(payload.get("version", "?")),
    )
    from .validate import check_model_size

    try:  # the architecture's size before anything is allocated (a huge config must not exhaust memory)
        check_model_size(ckpt.family())
    except ValueError as exc:
        raise CheckpointError(path, str(exc)) from exc
    floats = [(k, v) for k, v in ckpt.state_dict.items() if torch.is_tensor(v) and v.is_floating_point()]
    # one pass over all the weights (a check per tensor woke the torch threads ~50 times: 0.1-0.3 s on a busy machine)
    with torch_threads(1):
        finite = not floats or bool(torch.isfinite(torch.cat([v.detach().reshape(-1) for _, v in floats])).all())
    if not finite:
        bad = [k for k, v in floats if not torch.isfinite(v).all()]
        raise CheckpointError(path, f"{len(bad)} weight tensor(s) contain NaN or inf (e.g. {bad[0]!r}): a diverged training?")
    try:
        net = ckpt.build("cpu")
    except Exception as exc:  # wrong shapes / keys: weights of another architecture or config
        raise CheckpointError(
            path, f"its weights do not fit model {ckpt.model!r} with the stored config ({type(exc).__name__}: {exc})"
        ) from exc
    # kept for the first Checkpoint.build() (inference): the network is not built a second time
    ckpt.__dict__["_spare_net"] = (net, ckpt.state_dict, copy.deepcopy(ckpt.model_config))
    return ckpt


def _plain(obj: Any) -> Any:
    """Convert to types ``weights_only`` loading accepts (dict/list/str/int/float/bool/None)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "to_dict"):
        return _plain(obj.to_dict())
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks: which weights made a result."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_dir() -> Path:
    """The folder of checkpoints shipped inside the package."""
    return Path(__file__).resolve().parents[1] / "weights"


def shipped_checkpoint_path(model: str) -> Path:
    """Path of the shipped checkpoint for ``model`` (it may not exist for every model)."""
    return weights_dir() / f"{model}.pt"


def shipped_models() -> list[str]:
    """Names of models with shipped weights."""
    return sorted(p.stem for p in weights_dir().glob("*.pt"))


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise CheckpointError(path, "is a folder, not a checkpoint file" if path.is_dir() else "file not found")
    return path


def checkpoint_file(model_or_path: str | Path) -> Path:
    """The file :func:`resolve_checkpoint` loads for a file path or a shipped model's name, without loading it.

    Raises :class:`CheckpointError` for a missing file, a folder, or a name that is neither. A folder
    is never a checkpoint: one named like a shipped model (a results folder ``decode/`` in the working
    directory) means that model.
    """
    p = Path(model_or_path)
    name = str(model_or_path)
    if p.suffix in (".pt", ".pth", ".ckpt") or (p.exists() and not (p.is_dir() and name in shipped_models())):
        return _require_file(p)
    if name not in shipped_models():
        raise CheckpointError(name, f"neither a checkpoint file nor a model with shipped weights (shipped: {', '.join(shipped_models())})")
    return shipped_checkpoint_path(name)


def resolve_checkpoint(model_or_path: str | Path | Checkpoint) -> Checkpoint:
    """A checkpoint from an object, a file path or the name of a model with shipped weights."""
    if isinstance(model_or_path, Checkpoint):
        return model_or_path
    return load_checkpoint(checkpoint_file(model_or_path))
