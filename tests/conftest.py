"""Shared fixtures: the tiny random SD-architecture backbone, built once per test session."""

from __future__ import annotations

import pytest
import torch

# the machine is shared; more threads than cores only adds contention
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures(...)``): on a
    shared machine two threads per process oversubscribe the cores and a tiny UNet forward gets
    ~40x slower (measured 0.1 s vs 4.3 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory):
    """Path of a tiny random backbone (diffusers layout, 32 px images), built once per session."""
    from hero_bench.diffusion.tiny import build_tiny_backbone

    return build_tiny_backbone(tmp_path_factory.mktemp("backbones") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_backbone(tiny_backbone_dir):
    """The tiny backbone loaded on CPU in float32 (shared: tests must not leave LoRA attached)."""
    from hero_bench.diffusion.backbone import load_backbone

    return load_backbone(str(tiny_backbone_dir))
