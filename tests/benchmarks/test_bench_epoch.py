"""Where one training epoch's time goes, per method, on the toy tier (docs/performance.md).

One epoch of 32 images (D3PO: 5 groups of 7) with the shipped ShapesWorld model and the toy
preset, an evaluation of as many images, one torch thread (as the toy workflow runs), profiled by
``hero_bench.profiling`` (timers around the real UNet, text encoder, oracle, embedding network,
optimizer step and checkpoint writes; shares of the process's CPU time and of wall time), beside
a bare UNet forward + backward on the update's own batch measured in the same process.

Writes ``results/bench/epoch_profile_<method>.json`` per method and, once all three ran,
``results/bench/epoch_profile.json`` with the Markdown table ``epoch_profile.md`` beside it.
The issue's target is at least 80% of an epoch inside UNet forward + backward; the test reports
the share (``-s`` prints the table) and does not fail on it.  A few minutes on 2 cores; it runs
only with ``pytest tests/benchmarks --benchmark-enable`` (the unit run covers the profiler on the
smoke tier, ``tests/test_profiling.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hero_bench.profiling import COMPONENTS, PHASES, profile_epoch, table, write_profiles

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "results" / "bench"
METHODS = ("hero", "ddpo", "d3po")
IMAGES = 32
TARGET = 0.80


@pytest.fixture(scope="module")
def profiles():
    collected: dict[str, dict] = {}
    yield collected
    if set(collected) == set(METHODS):
        write_profiles(OUT / "epoch_profile.json", [collected[m] for m in METHODS])
        print("\n" + table([collected[m] for m in METHODS]))


@pytest.mark.benchmark(group="epoch-toy-32img")
@pytest.mark.parametrize("method", METHODS)
def test_bench_epoch_profile(request, benchmark, profiles, method):
    enabled = not request.config.getoption("benchmark_disable") or request.config.getoption("benchmark_enable")
    if not enabled:
        pytest.skip("the epoch profile takes minutes: it runs only with --benchmark-enable")
    profile = benchmark.pedantic(profile_epoch, args=(method, IMAGES), rounds=1, iterations=1)
    for kind in ("cpu", "wall"):
        split = profile[kind]
        assert set(split["components_s"]) == set(COMPONENTS) and set(split["phases_s"]) == set(PHASES)
        assert math.isclose(sum(split["components_share"].values()), 1.0, rel_tol=1e-9)
    profiles[method] = profile
    write_profiles(OUT / f"epoch_profile_{method}.json", [profile])
    share = profile["cpu"]["unet_share"]
    print(f"\n{method}: {100 * share:.1f}% of the epoch's CPU time inside UNet forward + backward "
          f"(target >= {100 * TARGET:.0f}%), epoch {profile['cpu']['epoch_s']:.1f} CPU s / "
          f"{profile['wall']['epoch_s']:.1f} wall s")
