"""Pretraining the ShapesWorld model (``hero-bench pretrain-toy``).

Standard epsilon-prediction diffusion training on freshly drawn scene batches: for step ``k`` the
scene generator gets its own ``numpy`` Generator seeded with ``(data_seed, k)`` and the noise and
timesteps their own ``torch.Generator`` seeded from ``(seed, k)``.  Nothing draws from global RNG
state, so a run is a pure function of its config, and a run interrupted and resumed from a
checkpoint produces the same weights, bit for bit, as an uninterrupted one: the checkpoint holds
the weights, the optimizer and EMA state and the step; the RNG state of step ``k`` is recomputed
from ``(seed, data_seed, k)``.

The text encoder is trained from scratch jointly with the UNet.  A fraction of captions is replaced
by the empty prompt (caption dropout) so that the model also learns the unconditional score that
classifier-free guidance needs.

Output folder ``--out DIR``:
- ``DIR/model/``: the final diffusers folder (EMA weights when EMA is on), ready for
  ``load_backbone``; it also holds ``training_config.json``;
- ``DIR/model_raw/``: the final raw (non-EMA) weights when EMA is on, to compare the two;
- ``DIR/checkpoint.pt``: the latest training state (atomic), used by ``--resume``;
- ``DIR/train_log.csv``: step, loss, learning rate, elapsed seconds;
- ``DIR/preview/step_XXXXXX.png``: a small sample grid at every checkpoint (a quick visual check,
  drawn by ``preview.py``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hero_bench.config import to_dict
from hero_bench.errors import ConfigError
from hero_bench.io import atomic_torch_save, atomic_write_json, atomic_write_text
from hero_bench.toyworld import scenes
from hero_bench.toyworld.model import (ModelConfig, build_components, config_dict, encode_prompts, load_components,
                                       parameter_counts, save_components)
# the preview grid and PNG writing (importable from here as before)
from hero_bench.toyworld.preview import PREVIEW_PROMPTS, preview_grid, save_png, tile  # noqa: F401


PREDICTION_TYPES = ("epsilon", "v_prediction")
"""The UNet targets pretraining can train (the sampler also reads ``sample``, which no recipe uses)."""


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines the pretrained weights."""

    model: ModelConfig = ModelConfig()
    """Architecture and noise schedule."""
    steps: int = 3000
    """Optimizer steps (each on a fresh batch of generated scenes)."""
    batch_size: int = 64
    """Scenes per step."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate (reached after warmup_steps, then cosine decay to lr_final_fraction of it)."""
    warmup_steps: int = 200
    """Linear learning-rate warmup from 0."""
    lr_final_fraction: float = 0.05
    """Learning rate at the last step as a fraction of the peak."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.999
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 disables clipping)."""
    caption_dropout: float = 0.1
    """Probability of training on the empty prompt instead of the caption (for classifier-free guidance)."""
    ema_decay: float = 0.999
    """EMA decay of the weights (UNet and text encoder together); 0 disables EMA."""
    seed: int = 0
    """Seed of the weight initialisation, the diffusion noise and the timesteps."""
    data_seed: int = 0
    """Seed of the scene generator (step k draws its batch from numpy Generator([data_seed, k]))."""
    generator: str = scenes.GENERATOR_VERSION
    """Version of the scene distribution the batches are drawn from (``scenes.WORLDS``); the shipped
    recipe's early stages drew from an older one than its last."""
    init_from: str = ""
    """Optional model folder (a previous run's OUT/model or OUT/model_raw) whose UNet and text encoder
    weights replace the random initialisation: a second training stage with a fresh optimizer and
    schedule.  Its architecture must equal ``model``; its training record is nested in this run's."""
    checkpoint_every: int = 250
    """Write checkpoint.pt (and a preview grid) every this many steps."""
    log_every: int = 10
    """Append a train_log.csv row every this many steps."""

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch_size must be >= 1, got steps={self.steps}, batch_size={self.batch_size}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ConfigError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("checkpoint_every and log_every must be >= 1")
        if self.generator not in scenes.WORLDS:
            raise ConfigError(f"generator={self.generator!r} is not a ShapesWorld generator version; "
                              f"accepted: {', '.join(scenes.WORLDS)}")
        # the schedule checks its own settings (SchedulerConfig); this is what pretraining can train
        sc = self.model.scheduler
        if sc.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"model.scheduler.prediction_type={sc.prediction_type!r} is not "
                              f"accepted; accepted: {', '.join(PREDICTION_TYPES)}")


def learning_rate(cfg: PretrainConfig, step: int) -> float:
    """Linear warmup then cosine decay to ``lr_final_fraction`` of the peak (a pure function of step)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr_final_fraction
    return cfg.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_batch(cfg: PretrainConfig, step: int, batch_fn: Callable | None = None):
    """The training batch of ``step``: images in [-1, 1] ``[B,3,S,S]``, captions (after dropout), noise, timesteps."""
    # deferred: torch (the toy modules import without it)
    import torch

    if batch_fn is None:
        batch_fn, _, _ = _scene_source(cfg, None)
    rng = np.random.default_rng([cfg.data_seed, step])
    images, captions = batch_fn(rng, cfg.batch_size)
    # caption dropout draws from its own stream so it does not shift the scene generator's draws
    drop = np.random.default_rng([cfg.data_seed, step, 1]).random(cfg.batch_size) < cfg.caption_dropout
    captions = ["" if d else c for c, d in zip(captions, drop)]
    x0 = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([cfg.seed, step]).generate_state(1, np.uint64)[0]) >> 1)
    noise = torch.randn(x0.shape, generator=gen)
    timesteps = torch.randint(0, cfg.model.scheduler.num_train_timesteps, (cfg.batch_size,), generator=gen)
    return x0, captions, noise, timesteps


@dataclass
class PretrainResult:
    """What a finished (or partly finished) pretraining run produced."""

    out_dir: Path
    model_dir: Path | None
    steps_done: int
    final_loss: float
    wall_seconds: float


def _ema_update(ema_params, params, decay: float) -> None:
    # deferred: torch (the toy modules import without it)
    import torch

    with torch.no_grad():
        torch._foreach_mul_(ema_params, decay)
        torch._foreach_add_(ema_params, params, alpha=1.0 - decay)


def _architecture(model_config: dict) -> dict:
    """The parts of a model config that shape the weights (everything but the noise schedule)."""
    return {k: v for k, v in model_config.items() if k != "scheduler"}


def _init_from(cfg: PretrainConfig, comps) -> dict:
    """Load a previous stage's weights into ``comps``; returns that stage's record and weight hashes."""
    folder = Path(cfg.init_from).expanduser()
    record_path = folder / "training_config.json"
    if not record_path.is_file() or not (folder / "unet").is_dir():
        raise ConfigError(
            f"init_from={cfg.init_from!r} is not a pretrain-toy model folder (needs unet/, text_encoder/ "
            "and training_config.json, as written to OUT/model or OUT/model_raw)"
        )
    record = json.loads(record_path.read_text())
    # the weights must fit: the same networks.  The noise schedule may change between stages (a stage
    # can move an epsilon model to v-prediction), so it is not compared.
    previous, wanted = (_architecture(record.get("model_config") or {}), _architecture(config_dict(cfg.model)))
    if previous != wanted:
        raise ConfigError(
            f"init_from={cfg.init_from!r} has another architecture ({previous}) than this "
            f"run's model config ({wanted}); give the same model.* settings"
        )
    prev = load_components(folder)
    if prev.tokenizer.get_vocab() != comps.tokenizer.get_vocab():
        raise ConfigError(f"init_from={cfg.init_from!r} was trained with another caption vocabulary")
    comps.unet.load_state_dict(prev.unet.state_dict())
    comps.text_encoder.load_state_dict(prev.text_encoder.state_dict())
    digests = {
        name: hashlib.sha256(p.read_bytes()).hexdigest()
        for name, p in (("unet", folder / "unet" / "diffusion_pytorch_model.safetensors"),
                        ("text_encoder", folder / "text_encoder" / "model.safetensors"))
    }
    return {"sha256": digests, "record": record}


def _scene_source(cfg: PretrainConfig, batch_fn: Callable | None) -> tuple[Callable, Sequence[str] | None, str]:
    """The batch function of the run, its caption vocabulary and its generator version.

    With the real scene generator the model's image size must be the generator's: a mismatch
    would only surface as a shape error deep inside the first UNet call."""
    if batch_fn is not None:
        return batch_fn, getattr(batch_fn, "VOCAB", None), getattr(batch_fn, "GENERATOR_VERSION", "custom")
    if cfg.model.image_size != scenes.IMAGE_SIZE:
        raise ConfigError(
            f"model.image_size={cfg.model.image_size} but the scene generator draws "
            f"{scenes.IMAGE_SIZE}x{scenes.IMAGE_SIZE} images; set model.image_size={scenes.IMAGE_SIZE}"
        )
    world = scenes.world(cfg.generator)

    def batch(rng: np.random.Generator, n: int):
        return scenes.training_batch(rng, n, world)

    return batch, scenes.VOCAB, world.version


class _Pretraining:
    """One pretraining run's state: the model, its optimizer and EMA copy, and what has been trained
    so far (losses, log rows, one segment per process).  A checkpoint is exactly this state, so
    ``resume`` followed by ``train`` continues an interrupted run bit for bit."""

    def __init__(self, cfg: PretrainConfig, out_dir: Path, batch_fn: Callable, vocab: Sequence[str] | None,
                 generator_version: str, preview: bool):
        # deferred: torch (the toy modules import without it)
        import torch

        self.cfg, self.out_dir, self.batch_fn, self.preview = cfg, out_dir, batch_fn, preview
        self.generator_version = generator_version
        self.cfg_dict = to_dict(cfg)
        self.ckpt_path = out_dir / "checkpoint.pt"
        self.comps = build_components(cfg.model, vocab=vocab, seed=cfg.seed)
        self.init_record = _init_from(cfg, self.comps) if cfg.init_from else None
        unet, te = self.comps.unet, self.comps.text_encoder
        self.params = list(unet.parameters()) + list(te.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                     weight_decay=cfg.weight_decay)
        # (EMA UNet, EMA text encoder), or None with EMA off
        self.ema_modules = None
        if cfg.ema_decay > 0:
            self.ema_modules = (copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(te).requires_grad_(False))
        self.ema_params = [] if self.ema_modules is None else \
            list(self.ema_modules[0].parameters()) + list(self.ema_modules[1].parameters())
        self.start, self.losses, self.log_rows, self.elapsed_before = 0, [], [], 0.0
        self.segments: list[dict] = []  # (start, end, torch threads) of each earlier process that trained this run

    def resume(self) -> None:
        """Continue from ``checkpoint.pt``; one written under another config is refused."""
        # deferred: torch (the toy modules import without it)
        import torch

        state = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        if state["config"] != self.cfg_dict:
            diff = sorted(k for k in set(state["config"]) | set(self.cfg_dict)
                          if state["config"].get(k) != self.cfg_dict.get(k))
            raise ConfigError(
                f"{self.ckpt_path} was written by a run with a different config (differs in: {', '.join(diff)}); "
                "rerun with the same settings, pass --no-resume to start over, or use another --out"
            )
        self.comps.unet.load_state_dict(state["unet"])
        self.comps.text_encoder.load_state_dict(state["text_encoder"])
        self.opt.load_state_dict(state["optimizer"])
        if self.ema_modules is not None:
            self.ema_modules[0].load_state_dict(state["ema_unet"])
            self.ema_modules[1].load_state_dict(state["ema_text_encoder"])
        self.start, self.losses, self.elapsed_before = state["step"], list(state["losses"]), float(state["elapsed"])
        self.log_rows = [tuple(r) for r in state["log_rows"]]
        self.segments = list(state.get("segments", [{"start": 0, "end": self.start, "threads": None}]))

    def segments_until(self, step_done: int) -> list[dict]:
        """The segments of earlier processes plus this one's, up to ``step_done``."""
        # deferred: torch (the toy modules import without it)
        import torch

        return self.segments + [{"start": self.start, "end": step_done, "threads": torch.get_num_threads()}]

    def ema_components(self):
        """The components with the EMA weights in place of the trained ones."""
        c = self.comps
        return type(c)(c.tokenizer, self.ema_modules[1], self.ema_modules[0], c.scheduler)

    def checkpoint(self, step_done: int, elapsed: float) -> None:
        """Write checkpoint.pt and train_log.csv (and a preview grid) after ``step_done`` steps."""
        cfg = self.cfg
        state = {
            "step": step_done,
            "config": self.cfg_dict,
            "unet": self.comps.unet.state_dict(),
            "text_encoder": self.comps.text_encoder.state_dict(),
            "optimizer": self.opt.state_dict(),
            "losses": self.losses,
            "log_rows": self.log_rows,
            "elapsed": elapsed,
            "segments": self.segments_until(step_done),
            # The RNG of step k is a pure function of these seeds and k (see step_batch), so they
            # are the whole RNG state needed to continue exactly.
            "rng": {"seed": cfg.seed, "data_seed": cfg.data_seed, "next_step": step_done},
            "generator_version": self.generator_version,
        }
        if self.ema_modules is not None:
            state["ema_unet"] = self.ema_modules[0].state_dict()
            state["ema_text_encoder"] = self.ema_modules[1].state_dict()
        atomic_torch_save(self.ckpt_path, state)
        lines = ["step,loss,loss_mean_window,lr,elapsed_s"] + [",".join(map(str, r)) for r in self.log_rows]
        atomic_write_text(self.out_dir / "train_log.csv", "\n".join(lines) + "\n")
        if self.preview:
            shown = self.comps if self.ema_modules is None else self.ema_components()
            save_png(self.out_dir / "preview" / f"step_{step_done:06d}.png", preview_grid(shown))

    def train_step(self, step: int) -> float:
        """One optimizer step on step ``step``'s batch (and the EMA update); returns the loss."""
        # deferred: torch (the toy modules import without it)
        import torch

        cfg, comps = self.cfg, self.comps
        x0, captions, noise, timesteps = step_batch(cfg, step, self.batch_fn)
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        ctx = encode_prompts(comps.tokenizer, comps.text_encoder, captions)
        noisy = comps.scheduler.add_noise(x0, noise, timesteps)
        pred = comps.unet(noisy, timesteps, ctx).sample
        if cfg.model.scheduler.prediction_type == "v_prediction":
            target = comps.scheduler.get_velocity(x0, noise, timesteps)
        else:
            target = noise
        loss = torch.nn.functional.mse_loss(pred, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        if self.ema_modules is not None:
            # warm the EMA up (decay grows from 0.1 towards ema_decay) so early random weights fade fast
            _ema_update(self.ema_params, self.params, min(cfg.ema_decay, (1 + step) / (10 + step)))
        return float(loss.detach())

    def train(self, end: int, progress: bool) -> float:
        """Train from the current step up to ``end``, logging and checkpointing on schedule;
        returns the run's elapsed seconds (earlier processes included)."""
        # deferred: tqdm.auto (30 ms without torch; the toy modules, and so hero-bench --help, import without it)
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.comps.unet.train(), self.comps.text_encoder.train()
        t_start = time.perf_counter()
        bar = tqdm(total=cfg.steps, initial=self.start, desc="pretrain-toy", unit="step", disable=not progress,
                   dynamic_ncols=True)
        smooth = None
        for step in range(self.start, end):
            value = self.train_step(step)
            self.losses.append(value)
            smooth = value if smooth is None else 0.98 * smooth + 0.02 * value
            bar.set_postfix(loss=f"{smooth:.4f}", lr=f"{learning_rate(cfg, step):.2e}")
            bar.update(1)
            done = step + 1
            if done % cfg.log_every == 0 or done == end:
                window = float(np.mean(self.losses[-cfg.log_every:]))
                self.log_rows.append((done, round(value, 6), round(window, 6), f"{learning_rate(cfg, step):.6g}",
                                      round(self.elapsed_before + time.perf_counter() - t_start, 1)))
            if done % cfg.checkpoint_every == 0 or done == end:
                self.checkpoint(done, self.elapsed_before + time.perf_counter() - t_start)
        bar.close()
        return self.elapsed_before + time.perf_counter() - t_start

    def record(self, final_loss: float, elapsed: float) -> dict:
        """training_config.json: the config, the outcome and everything else that made the weights."""
        # deferred: diffusers, torch, transformers (their versions; the toy modules import without them)
        import diffusers
        import torch
        import transformers

        cfg = self.cfg
        return {
            "pretrain_config": self.cfg_dict,
            "model_config": config_dict(cfg.model),
            "generator_version": self.generator_version,
            "seed": cfg.seed,
            "data_seed": cfg.data_seed,
            "steps": cfg.steps,
            "final_loss_mean_last_100": final_loss,
            "final_loss_last_step": self.losses[-1] if self.losses else None,
            "wall_seconds": round(elapsed, 1),
            "weights": "ema" if self.ema_modules is not None else "raw",
            "init_from": None if self.init_record is None else {"path": cfg.init_from, **self.init_record},
            "parameters": parameter_counts(self.comps),
            # CPU float reductions can depend on the thread count, so it is part of the recipe
            "torch_threads": torch.get_num_threads(),
            # one entry per process that trained this run (a resumed run has several)
            "segments": self.segments_until(cfg.steps),
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                         "transformers": transformers.__version__},
        }

    def save_model(self, record: dict) -> Path:
        """Write OUT/model (EMA weights when EMA is on, else the raw ones), OUT/model_raw (with EMA
        on) and OUT/training_config.json; returns OUT/model."""
        extra = {"training_config.json": json.dumps(record, indent=2, sort_keys=True) + "\n"}
        self.comps.unet.eval(), self.comps.text_encoder.eval()
        final = self.comps
        if self.ema_modules is not None:
            save_components(self.comps, self.out_dir / "model_raw", extra)
            final = self.ema_components()
        model_dir = save_components(final, self.out_dir / "model", extra)
        atomic_write_json(self.out_dir / "training_config.json", record)
        return model_dir


def pretrain(cfg: PretrainConfig, out_dir: str | Path, resume: bool = True, stop_after: int | None = None,
             batch_fn: Callable | None = None, progress: bool = True, preview: bool = True) -> PretrainResult:
    """Train (or resume training) the ShapesWorld model into ``out_dir``.

    ``stop_after``: stop (after checkpointing) once this many steps are done in total, without
    writing the final model; used to test exact resume.  ``batch_fn(rng, n)`` replaces
    ``scenes.training_batch`` (tests only).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    batch_fn, vocab, generator_version = _scene_source(cfg, batch_fn)
    run = _Pretraining(cfg, out_dir, batch_fn, vocab, generator_version, preview)
    if resume and run.ckpt_path.exists():
        run.resume()
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    elapsed = run.train(end, progress)
    final_loss = float(np.mean(run.losses[-100:])) if run.losses else float("nan")
    if end < cfg.steps:
        return PretrainResult(out_dir, None, end, final_loss, elapsed)
    model_dir = run.save_model(run.record(final_loss, elapsed))
    return PretrainResult(out_dir, model_dir, cfg.steps, final_loss, elapsed)
