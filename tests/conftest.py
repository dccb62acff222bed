import os

import pytest
import torch

# Headless OpenGL before anything imports pyrender.
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # the marker, not any keyword: a parameter may be "gpu"
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: on 2 shared cores, a second thread mostly waits on a descheduled one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
