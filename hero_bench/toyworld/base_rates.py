"""Base success rates of a backbone on every toy task (the HERO paper's "rare but possible" check).

For each toy task, twice: sample ``n`` images on the task's own (training) prompts and ``n`` on its
held-out eval prompts (each cycled) with the toy tier's sampler settings and the benchmark's fixed
eval noise seeds, judge them with the task's oracle, and report each success rate with a 95% Wilson
interval.  The sampling and judging are ``hero_bench.evaluate.sample_and_judge``, the protocol of
``evaluate_model`` itself (same prompts, same seeds, same oracle), so the numbers are the epoch-0
points of the toy curves: the primary metric (training prompts) and the transfer column (held-out
prompts).  The design asks for every task's base success to lie in [5%, 60%] on its held-out
prompts and in [10%, 60%] on its training prompts, so that a method sees a few successes in every
round (docs/architecture.md, "Design requirements").

The command line is ``hero-bench base-rates`` (``hero_bench/commands/base_rates.py``):

    hero-bench base-rates --backbone hero_bench/toyworld/pretrained/shapesworld --n 256 \
        [--json OUT.json] [--figures docs/figures] [--model-card] [--compare REFERENCE]

``write_model_card`` (``--model-card``) renders ``MODEL_CARD.md`` in the backbone folder from its
``training_config.json`` and the measured rates.  ``compare_rates`` (``--compare``) checks the
rates against another model's ``base_rates.json`` (a rebuilt model against the shipped one: the
reproduction criterion).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hero_bench.errors import ConfigError
from hero_bench.io import atomic_write_text
from hero_bench.tasks import get_task, list_tasks
from hero_bench.toyworld import scenes
from hero_bench.toyworld.model import SchedulerConfig
from hero_bench.toyworld.preview import save_png

CARD_NOTES = Path(__file__).with_name("model_card_notes.md")
"""The model card's hand-written part (measurements behind the choices), appended by
`hero-bench base-rates --model-card`."""
ACCEPTED_RANGE = (0.05, 0.60)
"""The pretrained model must reach each task's success on its held-out prompts with probability in
this range (docs/architecture.md, "Design requirements")."""
TRAIN_ACCEPTED_RANGE = (0.10, 0.60)
"""... and on its training prompts in this one: below 10% a 32-image round holds about three
successes, too few for HERO's positive set or DDPO's advantages to carry a signal."""
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (stays inside [0, 1], sane at 0 and n)."""
    if n <= 0:
        raise ValueError("wilson_interval needs n >= 1")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 and k = n the bound is exactly 0 / 1; computing it leaves float crumbs like 2.8e-17
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def toy_sampler_config():
    """The toy tier's sampler settings (from the toy preset, so the rates match the benchmark's epoch 0)."""
    # deferred: presets imports torch (the toy modules import without it)
    from hero_bench.presets import toy

    return toy("hero", "anomaly").sampler


def measure_task(backbone, task, sampler_cfg, n: int, seed: int, batch_size: int = 128,
                 prompt_set: str = "eval") -> dict[str, Any]:
    """Sample and judge ``n`` images of ``task`` on its ``prompt_set`` ("eval": the held-out prompts,
    "train": its own) by the benchmark's evaluation protocol at eval seed ``seed``; returns the rate,
    its CI, and the images/results."""
    # deferred: evaluate imports torch (the toy modules import without it)
    from hero_bench.evaluate import EvalConfig, sample_and_judge

    if prompt_set not in ("eval", "train"):
        raise ValueError(f"prompt_set must be 'eval' or 'train', got {prompt_set!r}")
    source = task.eval_prompts if prompt_set == "eval" else task.train_prompts
    oracle = task.oracle_factory()
    # evaluate_model's own sampling and judging: these are the benchmark's epoch-0 evaluation images
    judged = sample_and_judge(backbone, source, oracle, sampler_cfg,
                              EvalConfig(n_images=n, seed=seed, batch_size=batch_size))
    success, scores = judged.success, judged.scores
    k = int(success.sum())
    lo, hi = wilson_interval(k, n)
    per_prompt = {}
    for p in source:
        mask = np.array([q.text == p.text for q in judged.prompts])
        per_prompt[p.text] = {"n": int(mask.sum()), "successes": int(success[mask].sum())}
    return {
        "task": task.name,
        "category": task.category,
        "n": n,
        "successes": k,
        "success_rate": k / n,
        "ci95": [lo, hi],
        "mean_score": float(np.mean(scores)),
        "in_accepted_range": _in_range(k / n, ACCEPTED_RANGE if prompt_set == "eval" else TRAIN_ACCEPTED_RANGE),
        "per_prompt": per_prompt,
        "oracle": f"{oracle.name} v{oracle.version}",
        "_images": judged.images,
        "_success": success,
        "_scores": scores,
        "_prompts": [p.text for p in judged.prompts],
    }


def _in_range(rate: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= rate <= bounds[1]


def success_grid(images: np.ndarray, success: np.ndarray, columns: int = 8, scale: int = 4) -> np.ndarray:
    """Images in a grid, each framed green (oracle success) or red (failure)."""
    n, h, w, _ = images.shape
    frame = 2
    cell_h, cell_w = h * scale + 2 * frame, w * scale + 2 * frame
    rows = math.ceil(n / columns)
    gap = 2
    grid = np.full((rows * (cell_h + gap) + gap, columns * (cell_w + gap) + gap, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = gap + r * (cell_h + gap), gap + c * (cell_w + gap)
        grid[y:y + cell_h, x:x + cell_w] = (40, 170, 60) if success[i] else (220, 40, 40)
        grid[y + frame:y + cell_h - frame, x + frame:x + cell_w - frame] = (
            images[i].repeat(scale, axis=0).repeat(scale, axis=1)
        )
    return grid


def _rate_cell(r: dict[str, Any]) -> str:
    return (f"{r['successes']}/{r['n']} = {r['success_rate']:.1%} [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]"
            f"{'' if r['in_accepted_range'] else ' **outside**'}")


def _prompt_counts(r: dict[str, Any]) -> str:
    # sorted: base_rates.json is written with sorted keys, so the card reads the same whether it is
    # rendered from a fresh measurement or from the file (``--update``)
    return "; ".join(f"{t} ({v['successes']}/{v['n']})" for t, v in sorted(r["per_prompt"].items()))


def rates_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of ``measure_all``'s task rows: both prompt sets, each against its accepted range."""
    lo, hi = TRAIN_ACCEPTED_RANGE
    elo, ehi = ACCEPTED_RANGE
    lines = [f"| task | category | training prompts | success [95% Wilson CI] (accepted {lo:.0%}-{hi:.0%}) "
             f"| held-out prompts | success [95% Wilson CI] (accepted {elo:.0%}-{ehi:.0%}) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        t = r.get("train")
        train_cols = f"{_prompt_counts(t)} | {_rate_cell(t)}" if t else "(not measured) | "
        lines.append(f"| {r['task']} | {r['category']} | {train_cols} | {_prompt_counts(r)} | {_rate_cell(r)} |")
    return "\n".join(lines)


def _protocol_value(rates: dict[str, Any], key: str) -> Any:
    """``rates[key]``; the sampler with the settings added to ``SamplerConfig`` since the file was
    written filled in at their defaults, which is what that measurement ran with."""
    value = rates.get(key)
    if key == "sampler" and isinstance(value, dict):
        # deferred: the sampler imports torch (the toy modules import without it)
        from hero_bench.diffusion.sampler import SamplerConfig

        return {**dataclasses.asdict(SamplerConfig()), **value}
    return value


def compare_rates(reference: dict[str, Any], rates: dict[str, Any]) -> list[dict[str, Any]]:
    """Per task of ``rates``: is its success rate inside the reference's 95% interval?

    The model card's reproduction criterion: a model rebuilt from the documented recipe should land
    inside the shipped model's intervals.  Both must come from the same protocol (n, eval seed,
    sampler); a mismatch raises ConfigError because the numbers would not be comparable.
    """
    for key in ("n", "eval_seed", "sampler"):
        if _protocol_value(reference, key) != _protocol_value(rates, key):
            raise ConfigError(f"cannot compare base rates measured with different {key}: "
                              f"reference {reference.get(key)!r}, this run {rates.get(key)!r}")
    by_task = {r["task"]: r for r in reference["tasks"]}
    rows = []
    for r in rates["tasks"]:
        ref = by_task.get(r["task"])
        if ref is None:
            raise ConfigError(f"task {r['task']!r} is not in the reference (it has {', '.join(by_task)})")
        lo, hi = ref["ci95"]
        rows.append({"task": r["task"], "reference_successes": ref["successes"], "reference_rate": ref["success_rate"],
                     "reference_ci95": [lo, hi], "successes": r["successes"], "success_rate": r["success_rate"],
                     "inside": lo <= r["success_rate"] <= hi})
    return rows


def merge_rates(existing: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``existing`` with the tasks measured in ``update`` replaced (or appended), the others kept as
    they were measured: for re-measuring the tasks an oracle change touches without sampling every
    task again.  Both must come from the same protocol (n, eval seed, sampler, backbone); a
    mismatch raises ConfigError because one file would then mix incomparable rates."""
    for key in ("n", "eval_seed", "sampler", "backbone"):
        a, b = _protocol_value(existing, key), _protocol_value(update, key)
        same = (Path(a).resolve() == Path(b).resolve()) if key == "backbone" and a and b else a == b
        if not same:
            raise ConfigError(f"cannot update base rates measured with a different {key}: the file has "
                              f"{a!r}, this measurement {b!r}")
    new = {r["task"]: r for r in update["tasks"]}
    tasks = [new.pop(r["task"], r) for r in existing["tasks"]] + list(new.values())
    return {**existing, "tasks": tasks}


def oracle_versions(rows: Sequence[dict[str, Any]]) -> str:
    """The oracle (name and version) the rates were judged by, per task where they differ (a file
    updated by ``merge_rates`` after an oracle change that touched some tasks only)."""
    by_oracle: dict[str, list[str]] = {}
    for r in rows:
        by_oracle.setdefault(r["oracle"], []).append(r["task"])
    if len(by_oracle) <= 1:
        return f"`{next(iter(by_oracle), '?')}`"
    return "; ".join(f"`{oracle}` for {', '.join(tasks)}" for oracle, tasks in by_oracle.items())


def comparison_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of ``compare_rates``'s rows."""
    lines = ["| task | reference | reference 95% CI | this model | inside |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['reference_rate']:.1%} | [{r['reference_ci95'][0]:.1%}, "
                     f"{r['reference_ci95'][1]:.1%}] | {r['success_rate']:.1%} | {'yes' if r['inside'] else '**no**'} |")
    return "\n".join(lines)


def measure_all(backbone_dir: str, n: int = 256, seed: int | None = None, tasks: Sequence[str] | None = None,
                sampler_overrides: dict[str, Any] | None = None, figures: str | Path | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Base rates of every toy task (or ``tasks``) for the backbone in ``backbone_dir``."""
    # deferred: tqdm.auto (30 ms), and torch through the backbone and evaluate (hero-bench --help imports this module)
    from tqdm.auto import tqdm

    from hero_bench.diffusion.backbone import load_backbone
    from hero_bench.evaluate import EvalConfig

    seed = EvalConfig().seed if seed is None else seed
    sampler_cfg = dataclasses.replace(toy_sampler_config(), **(sampler_overrides or {}))
    backbone = load_backbone(backbone_dir)
    selected = [get_task(t) for t in tasks] if tasks else list_tasks(tier="toy")
    rows = []
    for task in tqdm(selected, desc="base rates", unit="task", disable=not progress):
        t0 = time.perf_counter()
        train = measure_task(backbone, task, sampler_cfg, n, seed, prompt_set="train")
        if tuple(task.eval_prompts) == tuple(task.train_prompts):
            # a task judged on its own prompts (sanity): the held-out set is the same images again,
            # only checked against the held-out range
            row = {**train, "in_accepted_range": _in_range(train["success_rate"], ACCEPTED_RANGE)}
        else:
            row = measure_task(backbone, task, sampler_cfg, n, seed, prompt_set="eval")
        row["seconds"] = round(time.perf_counter() - t0, 1)
        if figures is not None:
            # the grid shows the training prompts: what a method's first rounds look like
            k = min(32, n)
            path = Path(figures) / f"toy_base_{task.name}.png"
            save_png(path, success_grid(train["_images"][:k], train["_success"][:k]))
            row["figure"] = str(path)
        row["train"] = {k: v for k, v in train.items() if not k.startswith("_")}
        rows.append({k: v for k, v in row.items() if not k.startswith("_")})
    return {
        "backbone": str(backbone_dir),
        "n": n,
        "eval_seed": seed,
        "sampler": dataclasses.asdict(sampler_cfg),
        "accepted_range": list(ACCEPTED_RANGE),
        "tasks": rows,
    }


MODEL_CARD_TEMPLATE = """\
# ShapesWorld: the toy tier's text-to-image model

A small text-to-image diffusion model of Stable Diffusion's architecture family, trained by
hero-bench from scratch on procedurally drawn ShapesWorld scenes (`hero_bench/toyworld/scenes.py`).
It is the backbone of the `toy` tier: HERO, DDPO and D3PO finetune it (LoRA) against the exact
ShapesWorld oracles.  Files: diffusers layout, `unet/ text_encoder/ tokenizer/ scheduler/
model_index.json`, **no `vae/`: the model works in pixel space** (16x16 RGB scaled to [-1, 1]),
safetensors weights, {size_mb:.1f} MB in all.

## Architecture ({total_params:,} parameters)
- **UNet**: diffusers `UNet2DConditionModel`, sample 3x16x16, block_out_channels
  {block_out_channels}, layers_per_block {layers_per_block}, blocks {down_block_types} /
  {up_block_types} plus the cross-attention mid block (8x8), cross_attention_dim {hidden},
  {heads} attention heads, GroupNorm groups {groups}: **{unet_params:,} parameters**.
- **Text encoder**: transformers `CLIPTextModel`, hidden {hidden}, {te_layers} layers, {te_heads} heads,
  MLP {te_mlp}, {max_len} positions, vocabulary {vocab_size} (trained from scratch with the UNet):
  **{te_params:,} parameters**.
- **Tokenizer**: word level over the {n_words} ShapesWorld caption words plus `<pad> <unk> <bos> <eos>`
  (`PreTrainedTokenizerFast`), lower-cases, drops punctuation, pads to {max_len}; **a word outside the
  vocabulary becomes `<unk>`**, which the model has hardly seen: use only the caption words
  (`hero_bench.toyworld.scenes.VOCAB`).
- **Scheduler**: `DDIMScheduler`, {prediction}-prediction, {T} training steps, beta schedule
  `{beta_schedule}` ({beta_start} -> {beta_end}){zero_snr}, clip_sample on, `{spacing}` timestep spacing
  with steps_offset 1 and set_alpha_to_one false.  {schedule_why}

## Training
{stages}
Final stage:
- Data: freshly generated scenes every step, generator **`{generator_version}`**, data seed
  **{data_seed}** (step k draws its batch from `numpy.random.default_rng([data_seed, k])`), init/noise
  seed {seed}.
- Objective: {prediction}-prediction MSE, uniform timesteps; caption dropout {caption_dropout:.0%} (empty
  prompt) for classifier-free guidance.
- AdamW lr {lr:g} (warmup {warmup} steps, cosine decay to {lr_final:.0%}), weight decay {wd},
  betas ({b1}, {b2}), gradient clipping {clip}; batch {batch}; **{steps} steps**; EMA decay
  {ema} (the shipped weights are the **{weights}** weights; {ema_note}).
- Final training loss (mean of the last 100 steps): **{final_loss:.4f}**.
- Wall time of the final stage: **{wall_min:.1f} min** on the shared 2-core development machine
  (torch threads per step range in the stage list above; {wall_note}).
- torch {torch_v}, diffusers {diffusers_v}, transformers {transformers_v}.

## Sampler settings of the toy tier
DDIM **{s_steps} steps, eta {s_eta}, classifier-free guidance {s_guidance}**, negative prompt
"{s_neg}": the settings the rates below were measured with, which the toy preset
(`hero_bench.presets.toy`) must use for them to be the toy runs' starting points.

## Base success rates (the HERO paper's premise: success possible but rare)
{n} images per task on the task's own (training) prompts and {n} on its held-out prompts (each
cycled), the benchmark's eval noise seed {eval_seed} (the exact epoch-0 evaluation of every toy
run: the primary metric and the transfer column), judged by the exact ShapesWorld oracle
({oracle}).  The design requires every task in [10%, 60%] on its training prompts and in
[5%, 60%] on its held-out prompts (`docs/architecture.md`, "Design requirements").

{table}

Sample grids (first 32 images on the training prompts per task; green frame = oracle success, red = failure):
{figures}

## Reproduce
One command trains every stage into `work/stage1/`, `work/stage2/`, ... (rerun it to resume after
an interruption); the stages are data in `hero_bench/toyworld/recipe.py`, and a test keeps them
equal to this card's training record:
```
hero-bench pretrain-toy --recipe shipped --out work --threads 2
hero-bench base-rates --backbone {final_dir} --n {n} --compare hero_bench/toyworld/pretrained/shapesworld
```
The same stages as separate commands:
```
{commands}
```
The weights are a deterministic function of the config and seeds (bitwise on CPU with the same
thread count and library versions); `training_config.json` records everything used.  `--threads`
only changes speed and the last bits of float round-off.
{notes}"""


_DEFAULT_SETS = {"learning_rate": 1e-3, "warmup_steps": 200, "ema_decay": 0.999}


def _command(rec: dict[str, Any], out: str, init_from: str | None) -> str:
    """The pretrain-toy command line that reproduces one stage's record."""
    pc = rec["pretrain_config"]
    parts = [f"hero-bench pretrain-toy --out {out} --steps {rec['steps']} --batch-size {pc['batch_size']}",
             f"--seed {rec['seed']} --data-seed {rec['data_seed']}"]
    for key, default in _DEFAULT_SETS.items():
        if pc[key] != default:
            parts.append(f"--set {key}={pc[key]:g}")
    # noise-schedule settings a stage changed
    for key, default in dataclasses.asdict(SchedulerConfig()).items():
        value = _schedule(rec)[key]
        if value != default:
            parts.append(f"--set model.scheduler.{key}={str(value).lower() if isinstance(value, bool) else value}")
    # a stage drawn from an older version of the world than the default says so
    if rec["generator_version"] != scenes.GENERATOR_VERSION:
        parts.append(f"--set generator={rec['generator_version']}")
    if init_from:
        parts.append(f"--set init_from={init_from}")
    return " ".join(parts)


_WHY_LINEAR = """Why linear: 20-step DDIM starts sampling at t = 951 from
  pure noise; sqrt(alpha_bar_951) is 0.010 for linear, 0.043 for SD's scaled_linear and 0.075 for the
  cosine schedule, against a per-image noise mean of std 1/sqrt(768) = 0.036 at 3x16x16: the linear
  schedule keeps the least trace of a scene's mean colour where sampling starts."""

_WHY_ZERO_SNR = """Why zero terminal SNR, v-prediction and trailing
  spacing: a schedule that keeps a trace of the image at its last step teaches the model to read the
  scene from that trace, which the pure noise sampling starts from lacks; what the change did (more
  success at eta 1, not at eta 0) is measured in "Why the last stages" below."""


_PREDICTION_NAMES = {"epsilon": "epsilon", "v_prediction": "v", "sample": "x0"}
"""How the card names each diffusers prediction_type."""


def _schedule(rec: dict[str, Any]) -> dict[str, Any]:
    """A stage record's noise schedule, every ``SchedulerConfig`` field filled (a record written before
    a field existed trained with its default)."""
    return {**dataclasses.asdict(SchedulerConfig()), **rec["model_config"]["scheduler"]}


def _prediction(rec: dict[str, Any]) -> str:
    """A stage record's UNet target, as the card names it."""
    return _PREDICTION_NAMES[_schedule(rec)["prediction_type"]]


def _started_from_ema(rec: dict[str, Any]) -> bool:
    """Whether a stage started from its predecessor's EMA weights (``model/``) rather than ``model_raw/``."""
    return Path(rec["init_from"]["path"]).name != "model_raw"


def _stages(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Training records of every stage, first stage first."""
    chain = [rec]
    while chain[0].get("init_from"):
        chain.insert(0, chain[0]["init_from"]["record"])
    return chain


def write_model_card(folder: str | Path, rates: dict[str, Any], wall_note: str = "", ema_note: str = "",
                     notes: str = "") -> Path:
    """Render MODEL_CARD.md in ``folder`` from its training_config.json and ``rates`` (atomic)."""
    folder = Path(folder)
    rec = json.loads((folder / "training_config.json").read_text())
    pc, mc = rec["pretrain_config"], rec["model_config"]
    u, te, sc = mc["unet"], mc["text_encoder"], mc["scheduler"]
    schedule = _schedule(rec)
    vocab = json.loads((folder / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    s = rates["sampler"]
    chain = _stages(rec)
    stage_lines, commands = [], []
    for i, st in enumerate(chain, 1):
        spc = st["pretrain_config"]
        segs = st.get("segments") or [{"start": 0, "end": st["steps"], "threads": st.get("torch_threads")}]
        threads = ", ".join(f"steps {g['start']}-{g['end']}: {g['threads'] or 'not recorded'}" for g in segs)
        weights = ("EMA" if _started_from_ema(st) else "raw") if i > 1 else ""
        origin = f" (from stage {i - 1} {weights} weights)" if i > 1 else " (from random init)"
        stage_lines.append(
            f"- Stage {i}{origin}: {_prediction(st)}-prediction, "
            f"{st['steps']} steps, batch {spc['batch_size']}, peak lr {spc['learning_rate']:g} (warmup "
            f"{spc['warmup_steps']}, cosine), EMA {spc['ema_decay']}, seed {st['seed']}, data seed "
            f"{st['data_seed']}, generator `{st['generator_version']}`; final loss "
            f"{st['final_loss_mean_last_100']:.4f}; wall {st['wall_seconds'] / 60:.1f} min (torch threads: {threads}).")
        # folder names as `--recipe shipped` writes them (recipe.SHIPPED names its stages stage1, stage2, ...)
        prev = f"work/stage{i - 1}/{'model' if weights == 'EMA' else 'model_raw'}" if i > 1 else None
        commands.append(_command(st, f"work/stage{i}", prev))
    final_dir = f"work/stage{len(chain)}/model"
    figures = "\n".join(f"- {r['task']}: `{r['figure']}`" for r in rates["tasks"] if "figure" in r) or "(none)"
    text = MODEL_CARD_TEMPLATE.format(
        size_mb=size / 1e6,
        total_params=sum(rec["parameters"].values()),
        unet_params=rec["parameters"]["unet"], te_params=rec["parameters"]["text_encoder"],
        block_out_channels=tuple(u["block_out_channels"]), layers_per_block=u["layers_per_block"],
        down_block_types=tuple(u["down_block_types"]), up_block_types=tuple(u["up_block_types"]),
        heads=u["attention_head_dim"], groups=u["norm_num_groups"], hidden=te["hidden_size"],
        te_layers=te["num_hidden_layers"], te_heads=te["num_attention_heads"], te_mlp=te["intermediate_size"],
        max_len=te["model_max_length"], vocab_size=len(vocab), n_words=len(vocab) - 4,
        prediction=_prediction(rec), spacing=schedule["timestep_spacing"],
        zero_snr=" rescaled to zero terminal SNR" if schedule["rescale_betas_zero_snr"] else "",
        schedule_why=_WHY_ZERO_SNR if schedule["rescale_betas_zero_snr"] else _WHY_LINEAR,
        T=sc["num_train_timesteps"], beta_schedule=sc["beta_schedule"], beta_start=sc["beta_start"],
        beta_end=sc["beta_end"], generator_version=rec["generator_version"], data_seed=rec["data_seed"],
        seed=rec["seed"], caption_dropout=pc["caption_dropout"], lr=pc["learning_rate"],
        warmup=pc["warmup_steps"], lr_final=pc["lr_final_fraction"], wd=pc["weight_decay"],
        b1=pc["adam_beta1"], b2=pc["adam_beta2"], clip=pc["grad_clip"], batch=pc["batch_size"],
        steps=rec["steps"], ema=pc["ema_decay"], weights=rec["weights"], ema_note=ema_note or "see training_config.json",
        final_loss=rec["final_loss_mean_last_100"], wall_min=rec["wall_seconds"] / 60,
        threads=rec.get("torch_threads", "?"), wall_note=wall_note or "wall time depends on the machine's load",
        torch_v=rec["versions"]["torch"], diffusers_v=rec["versions"]["diffusers"],
        transformers_v=rec["versions"]["transformers"],
        s_steps=s["steps"], s_eta=s["eta"], s_guidance=s["guidance_scale"], s_neg=s["negative_prompt"],
        n=rates["n"], eval_seed=rates["eval_seed"], oracle=oracle_versions(rates["tasks"]),
        table=rates_table(rates["tasks"]), figures=figures,
        stages="\n".join(stage_lines), commands="\n".join(commands), final_dir=final_dir,
        notes=("\n" + notes.strip() + "\n") if notes.strip() else "",
    )
    path = folder / "MODEL_CARD.md"
    atomic_write_text(path, text)
    return path
