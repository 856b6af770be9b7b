"""Shared fixtures: the tiny random SD-architecture backbone, built once per test session."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch

from hero_bench.cli import main

# the machine is shared; more threads than cores only adds contention.  OMP_NUM_THREADS, when set to
# a count, wins: CI reruns the numeric tests with OMP_NUM_THREADS=1 (.ci/run), and round-off that
# depends on the thread count (parallel reductions, per-thread GEMM blocking) must stay within the
# tolerances below
_THREADS = os.environ.get("OMP_NUM_THREADS", "")
torch.set_num_threads(int(_THREADS) if _THREADS.isdigit() and int(_THREADS) > 0 else 2)

# -- floating-point tolerances -----------------------------------------------------------------------
# Results differ between CPUs (SIMD width, FMA, BLAS/oneDNN kernel choice, thread count), so a test
# comparing two DIFFERENT computations of the same quantity needs a tolerance derived from round-off;
# bitwise equality only holds for the same operations on the same data (same batch composition,
# deterministic kernels, same process), for RNG draws and for pure copies. Short float64 hand
# computations (stats, report, feedback) keep pytest.approx's default rel 1e-6: ~1e10 ulps, any CPU.
F32_EPS = torch.finfo(torch.float32).eps  # 1.19e-7: relative round-off of one float32 operation (2 ulp/2)
F64_EPS = torch.finfo(torch.float64).eps  # 2.22e-16


# --set items of a smoke-tier run small enough for a test: 2 sampling steps, rounds of 4 images,
# one timestep per sample (per method, since each has its own section)
MICRO_RUN = {
    "hero": ["hero.images_per_epoch=4", "hero.triplet_passes=2", "hero.ppo.timesteps_per_sample=1",
             "hero.ppo.train_batch_size=4"],
    "ddpo": ["ddpo.images_per_epoch=4", "ddpo.ppo.timesteps_per_sample=1", "ddpo.ppo.train_batch_size=4"],
    "d3po": [],  # the smoke preset's 2 groups of 4 images
}


def micro_overrides(method: str) -> list[str]:
    """The ``--set`` overrides of a micro smoke-tier run of ``method``."""
    return ["sampler.steps=2", "eval.n_images=4", "eval.batch_size=4", *MICRO_RUN[method]]


def micro_train_args(backbone, out, *, method: str = "hero", budget: int = 4, seed: int = 0) -> list[str]:
    """``hero-bench train`` arguments (for ``hero_bench.cli.main``) of a micro smoke-tier run."""
    args = ["train", "--tier", "smoke", "--task", "anomaly", "--method", method, "--seed", str(seed),
            "--budget", str(budget), "--backbone", str(backbone), "--out", str(out), "--quiet"]
    for item in micro_overrides(method):
        args += ["--set", item]
    return args


def finished_micro_run(out, backbone, *, method: str = "hero", budget: int = 4) -> Path:
    """Train a micro smoke-tier run (``micro_train_args``) into ``out`` to its end; returns ``out``."""
    assert main(micro_train_args(backbone, out, method=method, budget=budget)) == 0
    assert (Path(out) / "DONE.json").exists()
    return Path(out)


def load_script(name: str):
    """The module of ``scripts/<name>.py`` (the scripts are not a package), imported once per call."""
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rounding_tol(n_ops: int, magnitude: float = 1.0, eps: float = F32_EPS) -> float:
    """Worst-case absolute round-off of ``n_ops`` chained operations (or a sum of ``n_ops`` terms)
    on values of size ``magnitude``: ``n·eps·m`` (typical is ``sqrt(n)·eps·m``)."""
    return n_ops * eps * magnitude


def arccos_tol(cos_tol: float) -> float:
    """Angle error (radians) from an error ``cos_tol`` in a cosine near 1: arccos(1 - d) ≈ sqrt(2d),
    so round-off of size eps in the cosine of parallel vectors becomes an angle of ~sqrt(2·eps)."""
    return math.sqrt(2 * cos_tol)


# Relative difference between two float32 forwards of one small network (tiny UNet, text encoder,
# HERO's embedding net: ~10 layers, dot products of K ≤ ~600 terms) that compute the same thing by
# different paths (another batch size or composition, so other GEMM/conv blocking): per layer about
# sqrt(K)·eps ≈ 3e-6 typical, K·eps ≈ 7e-5 worst, compounding over the layers -> 1e-4.
NET_RTOL = 1e-4


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


# -- a continuous test oracle ---------------------------------------------------------------------------
class BrightnessOracle:
    """Score = mean brightness in [0, 1]; success = brighter than 0.5.

    The shapes oracle scores every image of the tiny random backbone alike (it draws no shapes), which
    gives DDPO zero advantages and D3PO no pairs; brightness varies from image to image, so both train.
    """

    name = "brightness"
    version = "test"

    def __call__(self, images, prompts, metadata):
        from oracles.base import OracleResult

        scores = images.reshape(len(images), -1).mean(axis=1) / 255.0
        return [OracleResult(bool(s > 0.5), float(s)) for s in scores]


@pytest.fixture
def brightness_task(monkeypatch):
    """Every task the runner looks up judges images with ``BrightnessOracle``.

    The runner resolves a run's task with ``get_task_of_tier`` bound in its own namespace, so that is the
    name patched; the tier check itself still runs.
    """
    import dataclasses

    import hero_bench.runner as runner

    real = runner.get_task_of_tier

    def patched(name, run_tier):
        return dataclasses.replace(real(name, run_tier), oracle_factory=BrightnessOracle, oracle_name="brightness")

    monkeypatch.setattr(runner, "get_task_of_tier", patched)
