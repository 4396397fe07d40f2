import os
from pathlib import Path

import pytest

# NAPARI_SMLM_EXTERNAL_DATA points elsewhere (e.g. from a git worktree, whose parent has no shared/)
EXTERNAL = Path(
    os.environ.get("NAPARI_SMLM_EXTERNAL_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "external"
)


@pytest.fixture(scope="session")
def external_data() -> Path:
    """The shared real-data folder (../shared/data/external); skips when absent."""
    if not EXTERNAL.is_dir():
        pytest.skip(f"shared data not found at {EXTERNAL}")
    return EXTERNAL


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    import torch

    torch.set_num_threads(int(os.environ.get("NAPARI_SMLM_TEST_THREADS", "2")))
    yield


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is present (CI has none): skipped, never errors."""
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in gpu:
        item.add_marker(skip)
