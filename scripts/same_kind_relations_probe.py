"""Does relation become drawable once the world says what its prompts say?

ShapesWorld's captions state a relation only between two objects of different kinds
(docs/methods.md, "Why relation does not learn"), while the relation task asks for two objects of
one kind ("a red triangle above a red triangle"). This probe continues pretraining the shipped
model on the world's own scenes, with one change to the captions: a day scene holding exactly two
objects of one kind, which the world captions "two red triangles", is captioned with a relation
that holds between them instead, with probability ``--p``. The stage's other settings are the
shipped recipe's last stage (v-prediction, zero terminal SNR, trailing spacing, EMA 0.998).

It then measures the relation task's training prompts, and the base rate of every toy task on its
training prompts, on the new model and on the shipped one (the evaluation protocol of
``hero-bench base-rates``: fixed evaluation noise at ``--eval-seed``, the toy sampler).

A probe, not the fix: a world change belongs in the scene generator (with GENERATOR_VERSION
bumped) and a full rebuild of the model, its card and every published toy result.

    python scripts/same_kind_relations_probe.py --out work/same-kind --steps 1500 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

import oracles  # noqa: F401  (registers the toy tasks)
from hero_bench.diffusion.backbone import load_backbone
from hero_bench.evaluate import EvalConfig, sample_and_judge
from hero_bench.tasks import list_tasks
from hero_bench.toyworld import scenes
from hero_bench.toyworld.base_rates import toy_sampler_config
from hero_bench.toyworld.pretrain import PretrainConfig, pretrain
from hero_bench.toyworld.recipe import SHIPPED

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "hero_bench" / "toyworld" / "pretrained" / "shapesworld"


def same_kind_relation_batch(p: float):
    """``scenes.training_batch`` with a relation caption for two objects of one kind, with probability p."""

    def batch(rng: np.random.Generator, n: int):
        drawn, captions = [], []
        for _ in range(n):
            scene = scenes.sample_scene(rng)
            text = scenes.caption(scene, rng)
            groups = scenes.mentionable_groups(scene)
            if not scene.is_night and len(groups) == 1 and rng.random() < p:
                (color, kind), members = next(iter(groups.items()))
                if len(members) == 2:
                    a, b = members
                    holding = [r for r in scenes.RELATIONS if scenes.relation_holds(a.box, b.box, r)]
                    if holding:
                        phrase = scenes.noun_phrase(1, color, kind)
                        text = f"{phrase} {scenes.RELATIONS[holding[int(rng.integers(len(holding)))]]} {phrase}"
            drawn.append(scene)
            captions.append(text)
        return scenes.render_batch(drawn, scenes.IMAGE_SIZE), captions

    batch.VOCAB = scenes.VOCAB
    batch.GENERATOR_VERSION = f"{scenes.GENERATOR_VERSION}+same-kind-relations-p{p}"
    return batch


def base_rates(model_dir: Path, n: int, seed: int) -> dict[str, float]:
    backbone = load_backbone(str(model_dir))
    rates = {}
    for task in list_tasks("toy"):
        judged = sample_and_judge(backbone, task.train_prompts, task.oracle_factory(), toy_sampler_config(),
                                  EvalConfig(n_images=n, seed=seed, batch_size=128))
        rates[task.name] = float(judged.success.mean())
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the continued stage (resumable)")
    parser.add_argument("--steps", type=int, default=1500, help="pretraining steps from the shipped model (default 1500)")
    parser.add_argument("--p", type=float, default=0.5, help="share of two-of-a-kind scenes captioned with a relation")
    parser.add_argument("--n", type=int, default=128, help="evaluation images per task (default 128)")
    parser.add_argument("--eval-seed", type=int, default=777, help="evaluation noise seed (default 777)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, last = SHIPPED[-1]
    fields = {k: v for k, v in last.items() if k != "start_from"}
    cfg = dataclasses.replace(PretrainConfig(), **{**fields, "steps": args.steps, "seed": 5, "data_seed": 5,
                                                   "init_from": str(SHIPPED_MODEL)})
    result = pretrain(cfg, args.out, batch_fn=same_kind_relation_batch(args.p), preview=False)
    table = {"steps": args.steps, "p": args.p, "n": args.n, "eval_seed": args.eval_seed,
             "shipped": base_rates(SHIPPED_MODEL, args.n, args.eval_seed),
             "probe": base_rates(result.model_dir, args.n, args.eval_seed)}
    (args.out / "base_rates.json").write_text(json.dumps(table, indent=2) + "\n")
    print("| task | shipped | probe |\n|---|---|---|")
    for name in table["shipped"]:
        print(f"| {name} | {table['shipped'][name]:.3f} | {table['probe'][name]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
