"""How much does the initial noise z_T decide whether an image succeeds?

HERO's feedback-guided generation (docs/algorithms.md §4.5) samples the next epoch's initial noises near those
of the best and good images.  That can only raise the success rate if z_T largely determines the
outcome; with stochastic DDIM (eta > 0) fresh noise enters at every step and may decide instead.
This module measures it: ``n_noises`` initial noises, each sampled ``repeats`` times with
different per-step noise, judged by the task's oracle, then the one-way ANOVA intraclass
correlation ICC(1) of the oracle's success flag and of its continuous score, grouped by z_T.

ICC(1) is the share of the outcome's variance that lies between initial noises: about 0 when z_T
does not matter (the spread of group means is what ``repeats`` draws give by chance), 1 when z_T
decides everything (every repeat of a z_T gives the same outcome, as with eta = 0).

The *decision curve* asks the same question of every later state: chains are sampled once, each
is branched after step k into ``repeats`` continuations with fresh per-step noise, and ICC(1) is
taken over the chains' states x_k.  At k = 0 it is the z_T measurement above; it approaches 1 at
the last steps, whose added noise is small.  Where it rises tells which steps decide the
outcome: a criterion settled in the first steps (layout, colour) against one left open until the
last few, low-noise steps (a one-pixel defect, a stray speck), which the per-step noise decides
and a policy's mean has little say over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from hero_bench.errors import ConfigError


def icc1(values: np.ndarray) -> float:
    """One-way random-effects intraclass correlation ICC(1) of ``values[group, repeat]``.

    (MSB − MSW) / (MSB + (k − 1)·MSW) with k repeats per group; NaN when the values do not vary
    at all (nothing to attribute).  Negative estimates (less spread between groups than chance
    gives) are returned as they are, not clipped, so that they show sampling noise honestly.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"icc1 needs values[group, repeat] with >= 2 groups and >= 2 repeats, got shape {x.shape}")
    g, k = x.shape
    means = x.mean(axis=1)
    msb = k * ((means - x.mean()) ** 2).sum() / (g - 1)
    msw = ((x - means[:, None]) ** 2).sum() / (g * (k - 1))
    denom = msb + (k - 1) * msw
    return float("nan") if denom == 0 else float((msb - msw) / denom)


def icc1_interval(values: np.ndarray, reps: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``icc1(values)``, resampling whole groups (initial noises)
    with replacement: the groups are the sampled units, the repeats within one are not independent
    of it. Resamples in which nothing varies (ICC undefined) are left out."""
    x = np.asarray(values, dtype=np.float64)
    icc1(x)  # the same shape checks
    rng = np.random.default_rng(seed)
    draws = np.array([icc1(x[rng.integers(0, x.shape[0], x.shape[0])]) for _ in range(reps)])
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


def binary_matrix(success_per_noise, repeats: int) -> np.ndarray:
    """The 0/1 ``[noise, repeat]`` matrix of a binary outcome from each noise's success rate (the
    order within a row does not change ICC(1)), for a measurement saved with its per-noise rates."""
    counts = np.rint(np.asarray(success_per_noise, dtype=np.float64) * repeats).astype(int)
    return (np.arange(repeats)[None, :] < counts[:, None]).astype(np.float64)


def recorded_interval(result: Mapping[str, Any]) -> tuple[float, float]:
    """The 95% interval of ICC(1) of success that a measurement's JSON records.

    A file written before the command recorded it (``icc_success_ci95``) is given the interval the
    command would have written: from its per-noise success rates (``binary_matrix``; for a 0/1
    outcome they determine ICC(1) and every resample of it) with the measurement's own seed."""
    if "icc_success_ci95" in result:
        low, high = result["icc_success_ci95"]
        return float(low), float(high)
    missing = [k for k in ("success_per_noise", "repeats", "seed") if k not in result]
    if missing:
        raise ValueError(f"records neither icc_success_ci95 nor {', '.join(missing)} to compute it from")
    return icc1_interval(binary_matrix(result["success_per_noise"], int(result["repeats"])), seed=int(result["seed"]))


def check_design(task, n_noises: int, repeats: int, prompt_index: int) -> None:
    """Raise ConfigError unless the design can give an ICC: >= 2 noises, >= 2 repeats and an
    existing train prompt.  Separate so that the CLI checks before it loads a backbone."""
    for name, value in (("noises", n_noises), ("repeats", repeats)):
        if value < 2:
            raise ConfigError(f"{name} must be at least 2 (an ICC needs two groups of two), got {value}")
    n = len(task.train_prompts)
    if not 0 <= prompt_index < n:
        raise ConfigError(f"prompt index {prompt_index} out of range: task {task.name!r} has "
                          f"{n} train prompts (0..{n - 1})")


@dataclasses.dataclass(frozen=True)
class NoiseGroups:
    """``n_noises`` initial noises of one prompt, each sampled ``repeats`` times, and the oracle's
    verdicts as ``[noise, repeat]`` arrays."""

    prompt: Any
    """The task's training prompt sampled (its text and metadata)."""
    images: np.ndarray
    """uint8 ``[n_noises * repeats, H, W, C]``, the repeats of one noise next to each other."""
    success: np.ndarray
    """0/1 ``[n_noises, repeats]``."""
    score: np.ndarray
    """The oracle's continuous score, ``[n_noises, repeats]``."""


def sample_noise_groups(backbone, task, sampler_cfg, n_noises: int = 16, repeats: int = 8, seed: int = 0,
                        prompt_index: int = 0, start_step: int = 0) -> NoiseGroups:
    """Sample ``n_noises`` × ``repeats`` images of one train prompt of ``task`` and judge them.

    Every z_T is repeated ``repeats`` times in one batch; the per-step noise comes from one
    generator, so the repeats of a z_T differ only in the noise added along the way. With
    ``start_step`` k > 0, z_T is fed in at the sampler's step k instead of its first (the
    sampler's ``start_step``; a probe of where in the chain pure noise is still read as signal).
    """
    # deferred: torch, the sampler (icc1 and check_design run without them)
    import torch

    from hero_bench.diffusion.sampler import initial_noise, sample_trajectories

    check_design(task, n_noises, repeats, prompt_index)
    prompt = task.train_prompts[prompt_index]
    noise_gen = torch.Generator(device="cpu").manual_seed(seed)
    step_gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    z_T = initial_noise(backbone, n_noises, noise_gen).repeat_interleave(repeats, dim=0)
    n = n_noises * repeats
    with torch.no_grad():
        traj = sample_trajectories(backbone, [prompt.text] * n, z_T, sampler_cfg, step_gen, start_step=start_step)
    results = list(task.oracle_factory()(traj.images, [prompt.text] * n, [prompt.metadata] * n))
    success = np.array([float(r.success) for r in results]).reshape(n_noises, repeats)
    score = np.array([float(r.score) for r in results]).reshape(n_noises, repeats)
    return NoiseGroups(prompt, np.asarray(traj.images), success, score)


def measure_noise_influence(backbone, task, sampler_cfg, n_noises: int = 16, repeats: int = 8,
                            seed: int = 0, prompt_index: int = 0) -> dict[str, Any]:
    """ICC(1) of success and of score over the initial noises of ``sample_noise_groups``."""
    groups = sample_noise_groups(backbone, task, sampler_cfg, n_noises, repeats, seed, prompt_index)
    success = groups.success
    return {
        "task": task.name,
        "prompt": groups.prompt.text,
        "n_noises": n_noises,
        "repeats": repeats,
        "seed": seed,
        "sampler": dataclasses.asdict(sampler_cfg),
        "success_rate": float(success.mean()),
        "icc_success": icc1(success),
        # resampling the initial noises: n_noises = 32 leaves about ±0.15 at ICC 0.3-0.5
        "icc_success_ci95": list(icc1_interval(success, seed=seed)),
        "icc_score": icc1(groups.score),
        "success_per_noise": success.mean(axis=1).round(4).tolist(),
    }


def check_branch_steps(branch_steps, steps: int) -> list[int]:
    """The sorted distinct branch steps, each in 0..steps-1; ConfigError naming the bad one."""
    chosen = sorted(set(int(k) for k in branch_steps))
    if not chosen:
        raise ConfigError("give at least one branch step")
    bad = [k for k in chosen if not 0 <= k < steps]
    if bad:
        raise ConfigError(f"branch step {bad[0]} out of range: the sampler has {steps} steps, so a chain can be "
                          f"branched after 0..{steps - 1} of them")
    return chosen


def measure_decision_curve(backbone, task, sampler_cfg, branch_steps, n_chains: int = 64, repeats: int = 8,
                           seed: int = 0) -> dict[str, Any]:
    """ICC(1) of success over the chains' states after each of ``branch_steps`` (see the module docstring).

    ``n_chains`` chains cycle through the task's train prompts (the training distribution, not one
    prompt); each is continued ``repeats`` times from its state after step k with fresh per-step
    noise. One generator seeds the chains and all continuations, so a seed fixes every draw.
    """
    # deferred: torch, the sampler (icc1 and the checks run without them)
    import torch

    from hero_bench.diffusion.sampler import initial_noise, sample_trajectories
    from hero_bench.evaluate import cycle_prompts

    check_design(task, n_chains, repeats, 0)
    if sampler_cfg.eta == 0:
        raise ConfigError("a decision curve needs per-step noise (eta > 0): with eta = 0 every state decides the "
                          "outcome and each branch repeats the chain")
    ks = check_branch_steps(branch_steps, sampler_cfg.steps)
    prompts = cycle_prompts(task.train_prompts, n_chains)
    # each chain's prompt, once per continuation (repeat_interleave's order)
    branched = [p for p in prompts for _ in range(repeats)]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    oracle = task.oracle_factory()
    with torch.no_grad():
        chains = sample_trajectories(backbone, [p.text for p in prompts], initial_noise(backbone, n_chains, generator),
                                     sampler_cfg, generator)
        rows = []
        for k in ks:
            states = chains.latents[:, k].repeat_interleave(repeats, dim=0)
            branch = sample_trajectories(backbone, [p.text for p in branched], states, sampler_cfg, generator,
                                         start_step=k)
            results = oracle(branch.images, branch.prompts, [p.metadata for p in branched])
            success = np.array([float(r.success) for r in results]).reshape(n_chains, repeats)
            score = np.array([float(r.score) for r in results]).reshape(n_chains, repeats)
            rows.append({"step": k, "timestep": int(chains.timesteps[k]), "success_rate": float(success.mean()),
                         "icc_success": icc1(success), "icc_score": icc1(score)})
    return {
        "task": task.name,
        "n_chains": n_chains,
        "repeats": repeats,
        "seed": seed,
        "sampler": dataclasses.asdict(sampler_cfg),
        "curve": rows,
    }
