"""Property-based configs (hypothesis): every value a user can type for every key of a run config
is either accepted, and then trains on the smoke tier, or refused with one line that names the key
and says what is accepted. Nothing in between: no traceback, no run that dies later."""

from __future__ import annotations

import csv
import dataclasses
import math
import tempfile
import types
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from hero_bench.errors import HeroBenchError
from hero_bench.presets import build_run_config
from hero_bench.run_config import RunConfig
from hero_bench.runner import train

# chosen by the dedicated CLI arguments (--tier, --task, --method, --backbone), each checked there
NOT_OVERRIDDEN = {"tier", "task", "method", "backbone"}
ACCEPTED_PHRASES = ("accepted", "must", "expected", "is not one of", "should")


def leaf_fields(cls, prefix=""):
    """(dotted key, annotation) of every leaf of a config dataclass."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            yield from leaf_fields(kind, f"{prefix}{f.name}.")
        elif prefix + f.name not in NOT_OVERRIDDEN:
            yield prefix + f.name, kind


LEAVES = dict(leaf_fields(RunConfig))


def _text_of(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text_of(v) for v in value) + "]"
    return str(value)


def typed_values(kind):
    """Values of the annotation's own type, in and out of the sensible range."""
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(kind))
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(typed_values(a) for a in typing.get_args(kind) if a is not type(None)),
                         st.just("null"))
    if origin is tuple:
        return st.lists(typed_values(typing.get_args(kind)[0]), max_size=3)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(min_value=-3, max_value=300)
    if kind is float:
        return st.one_of(st.floats(min_value=-2.0, max_value=20.0), st.sampled_from(
            [0.0, 1e-9, 1.0, float("nan"), float("inf"), -float("inf"), 1e30]))
    if kind is str:
        return st.text(alphabet="abcxyz_0.-", max_size=8)
    raise AssertionError(f"no strategy for {kind!r}")


JUNK = st.sampled_from(["", "abc", "[1,", "{}", "1.5", "-1", "null", "[]", "true", "1e400", "nan", "x=y"])


@st.composite
def overrides(draw):
    key, kind = draw(st.sampled_from(sorted(LEAVES.items())))
    value = draw(st.one_of(typed_values(LEAVES[key]).map(_text_of), JUNK))
    return f"{key}={value}", key


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["hero", "ddpo", "d3po", "base"]), st.lists(overrides(), min_size=1, max_size=3))
def test_every_override_is_accepted_or_refused_in_one_line_naming_its_key(method, items):
    texts = [text for text, _ in items]
    try:
        cfg = build_run_config("smoke", "sanity", method, overrides=texts)
    except HeroBenchError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert any(phrase in message for phrase in ACCEPTED_PHRASES), message
        # the refusal names one of the keys it was given (or the budget, which a key can make too small)
        names = {key for _, key in items} | {key.rsplit(".", 1)[-1] for _, key in items}
        assert any(name in message for name in names) or "budget" in message, (texts, message)
        event("refused")
        return
    event("accepted")
    assert isinstance(cfg, RunConfig)
    for _, key in items:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if isinstance(value, float):
            assert math.isfinite(value), f"{key} accepted the non-finite value {value}"


# Values a user might plausibly try, kept small so that an accepted config trains in seconds on the
# tiny backbone; the edges (0, 1, above the batch, the other mode) are where configs break.
RUN_SETTINGS = {
    "budget": st.integers(0, 12),
    "sampler.steps": st.integers(0, 4),
    "sampler.eta": st.sampled_from([0.0, 0.5, 1.0, 1.5]),
    "sampler.guidance_scale": st.sampled_from([0.0, 1.0, 5.0]),
    "sampler.batch_size": st.integers(0, 5),
    "lora.rank": st.integers(0, 4),
    "eval.n_images": st.integers(0, 5),
    "eval.every_epochs": st.integers(0, 3),
    "eval.batch_size": st.integers(0, 5),
    "eval.transfer_images": st.sampled_from(["null", "0", "3"]),
    "evaluator.flip_prob": st.sampled_from([0.0, 0.2, 1.0, 1.5]),
    "evaluator.best_temperature": st.sampled_from([0.0, 0.5]),
    "evaluator.ddpo_reward": st.sampled_from(["success", "score"]),
    "hero.images_per_epoch": st.integers(0, 6),
    "hero.best_ratio": st.sampled_from([0.0, 0.5, 1.0, 1.5]),
    "hero.noise_guidance": st.booleans().map(_text_of),
    "hero.reward_mode": st.sampled_from(["similarity-to-best", "similarity-to-positives", "binary"]),
    "hero.triplet_passes": st.integers(0, 3),
    "hero.ppo.train_batch_size": st.integers(0, 6),
    "hero.ppo.grad_accum_steps": st.integers(0, 3),
    "hero.ppo.inner_epochs": st.integers(0, 2),
    "hero.ppo.timesteps_per_sample": st.sampled_from(["null", "0", "1", "3", "9"]),
    "ddpo.images_per_epoch": st.integers(0, 6),
    "ddpo.per_prompt_stat_tracking": st.booleans().map(_text_of),
    "ddpo.stat_buffer_size": st.integers(0, 8),
    "ddpo.stat_min_count": st.integers(0, 8),
    "ddpo.ppo.train_batch_size": st.integers(0, 6),
    "ddpo.ppo.timestep_fraction": st.sampled_from([0.0, 0.3, 1.0, 1.5]),
    "ddpo.ppo.last_steps": st.sampled_from(["null", "0", "2"]),
    "d3po.group_size": st.integers(0, 4),
    "d3po.groups_per_epoch": st.integers(0, 2),
    "d3po.train_batch_size": st.integers(0, 3),
    "d3po.reference": st.sampled_from(["previous", "pretrained"]),
    "d3po.timestep_fraction": st.sampled_from([0.0, 0.3, 1.0]),
    "d3po.last_steps": st.sampled_from(["null", "0", "1", "5"]),
}
# diagnostics that are NaN by definition when a batch holds one label class (AUC) or no pair
UNDEFINED_ON_ONE_CLASS = {"reward_auc", "reward_auc_prior", "pair_accuracy"}
# what keeps every run small whatever else is drawn (the draws may override them)
MICRO = ["sampler.steps=2", "eval.n_images=2", "eval.batch_size=2", "hero.images_per_epoch=4",
         "hero.triplet_passes=1", "hero.ppo.timesteps_per_sample=1", "hero.ppo.train_batch_size=4",
         "ddpo.images_per_epoch=4", "ddpo.ppo.train_batch_size=4", "d3po.group_size=2", "d3po.groups_per_epoch=2",
         "d3po.timestep_fraction=0.5", "ddpo.ppo.timestep_fraction=0.5"]


@st.composite
def run_settings(draw):
    keys = draw(st.lists(st.sampled_from(sorted(RUN_SETTINGS)), min_size=1, max_size=4, unique=True))
    return [f"{key}={_text_of(draw(RUN_SETTINGS[key]))}" for key in keys]


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["hero", "ddpo", "d3po", "base"]), items=run_settings())
# inputs that once slipped through: a NaN log-prob at eta 0, an empty "finished" run at budget 1
@example(method="ddpo", items=["sampler.eta=0.0"])
@example(method="hero", items=["budget=1"])
def test_every_accepted_config_trains_on_the_smoke_tier(tiny_backbone_dir, method, items):
    budget = [i for i in items if i.startswith("budget=")]
    rest = [i for i in items if not i.startswith("budget=")]
    try:
        cfg = build_run_config("smoke", "sanity", method, budget=int(budget[0].split("=")[1]) if budget else 8,
                               backbone=str(tiny_backbone_dir), overrides=MICRO + rest)
    except HeroBenchError as exc:
        assert "\n" not in str(exc)
        event("refused")
        return
    event("accepted")
    with tempfile.TemporaryDirectory() as out:
        train(cfg, out, progress=False)
        if cfg.method != "base":  # an accepted budget buys at least one round of feedback
            log = Path(out) / "train_log.csv"
            assert log.exists() and list(csv.DictReader(log.open())), f"{items}: no epoch trained"
        # finished is not enough: a NaN loss or log-prob finishes too, and poisons the adapters
        for name in ("train_log.csv", "eval.csv"):
            path = Path(out) / name
            rows = list(csv.DictReader(path.open())) if path.exists() else []
            for row in rows:
                for column, text in row.items():
                    if column in UNDEFINED_ON_ONE_CLASS:
                        continue
                    assert text.lower() not in ("nan", "inf", "-inf"), f"{name}: {column} = {text} with {items}"
