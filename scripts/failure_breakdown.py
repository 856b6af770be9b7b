"""Why do a model's images fail a task? Group the oracle's verdicts by the conditions that failed.

Samples ``--n`` images of a toy task's training prompts with the benchmark's evaluation protocol
(``sample_and_judge``: fixed evaluation noise at ``--seed``, the toy sampler) from the shipped model,
or from a run's last adapter with ``--run``, and prints, per prompt, how many images fail which set
of the oracle's conditions, how many objects and stray specks ("debris") they hold, and for the
images whose only object is of the requested colour and shape, why they still fail (malformed,
off the palette: oracle version 5's colour bound, or a stray speck); for one-object prompts also the
failures that hold the requested kind in any company, none of it well formed, and, where one object
is asked for but at least one is counted (rare_binding's prompt until oracle version 6, which asks
for exactly one), the successes that drew it more than once.
A learner that does not move a task is often facing one dominant failure; this says which.

    python scripts/failure_breakdown.py anomaly relation --n 256 --seed 777
    python scripts/failure_breakdown.py anomaly --run results/runs/toy/anomaly/ddpo/seed0

For a task whose objects need only be recognisable (safety) it also counts the successes whose
object is well formed too: whether training took the task's criterion or the room the lenient
shape check leaves.

docs/methods.md ("The designed tasks on the four-stage model") quotes its anomaly and relation
counts at --n 256 --seed 777.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from hero_bench.diffusion.backbone import load_backbone, resolve_backbone
from hero_bench.diffusion.lora import add_lora, load_lora
from hero_bench.evaluate import EvalConfig, JudgedImages, sample_and_judge
from hero_bench.presets import TOY_BACKBONE
from hero_bench.run_config import load_config_file
from hero_bench.tasks import get_task
from hero_bench.toyworld.analysis import WELL_FORMED_MAX_DRIFT
from hero_bench.toyworld.base_rates import toy_sampler_config


def _is_requested(obj: dict, want: dict) -> bool:
    """A detected object (``details["objects"]`` entry) has the kind and colour a prompt's object spec asks."""
    return obj["shape"] == want["shape"] and want.get("color") in (None, obj["color"])


def _off_palette(obj: dict) -> bool:
    """Drawn further from its palette colour than oracle v5 lets a well-formed object be."""
    return obj["drift"] > WELL_FORMED_MAX_DRIFT


def breakdown(judged: JudgedImages, task) -> str:
    n = len(judged.results)
    lines = [f"{task.name}: {int(judged.success.sum())} of {n} succeed"]
    by_prompt: dict[str, Counter] = {}
    objects, debris, single, drawn_not_counted = Counter(), Counter(), Counter(), Counter()
    lenient_successes = lenient_well_formed = 0  # tasks whose objects need only be recognisable (safety)
    # one object asked for, "at least one" counted (rare_binding before oracle v6): successes that drew the kind twice or
    # more, the room a learner takes when two chances at a well-formed copy beat one
    at_least_one = several = 0
    for prompt, r in zip(judged.prompts, judged.results):
        failed = tuple(sorted(name for name, met in r.details["conditions"].items() if not met))
        by_prompt.setdefault(prompt.text, Counter())[failed] += 1
        objs = r.details["objects"]
        objects[len(objs)] += 1
        debris[min(len(r.details["debris"]), 3)] += 1
        spec = prompt.metadata.get("objects") or []
        lenient = [want for want in spec if want.get("well_formed") is False]
        one_object = len(spec) == 1 and spec[0].get("count", 1) == 1
        if r.success and lenient:
            lenient_successes += 1
            lenient_well_formed += any(o["well_formed"] and _is_requested(o, want) for want in lenient for o in objs)
        if r.success and one_object and not spec[0].get("exact"):
            at_least_one += 1
            several += sum(_is_requested(o, spec[0]) for o in objs) > 1
        if not r.success and len(objs) == 1 and one_object:
            o = objs[0]
            if _is_requested(o, spec[0]):
                speck = "with a speck" if r.details["debris"] else "no speck"
                # oracle v5: a well-shaped object drawn off its palette colour is not well formed
                flaw = "well formed" if o["well_formed"] else "off the palette" if _off_palette(o) else "malformed"
                single[f"{flaw}, {speck}"] += 1
        if not r.success and len(spec) == 1:
            requested = [o for o in objs if _is_requested(o, spec[0])]
            if requested and not any(o["well_formed"] for o in requested):
                # the kind was drawn; why none of them counts (any number of other objects beside)
                drawn_not_counted["off the palette" if all(map(_off_palette, requested)) else "malformed"] += 1
    for prompt, counts in by_prompt.items():
        lines.append(f"  {prompt!r}")
        for failed, k in counts.most_common():
            lines.append(f"    {k:4d}  " + (f"failed: {', '.join(failed)}" if failed else "succeed"))
    lines.append(f"  objects per image: {dict(sorted(objects.items()))}; "
                 f"specks per image (3 = 3 or more): {dict(sorted(debris.items()))}")
    if lenient_successes:
        lines.append(f"  successes whose recognisable object is also well formed: "
                     f"{lenient_well_formed} of {lenient_successes}")
    if at_least_one:
        lines.append(f"  successes holding the requested colour and shape more than once (one asked for, "
                     f"at least one counted): {several} of {at_least_one}")
    if single:
        lines.append(f"  failures whose one object is the requested colour and shape: {dict(single)}")
    if drawn_not_counted:
        lines.append(f"  failures holding the requested colour and shape, none of them well formed: "
                     f"{dict(drawn_not_counted)} (off the palette: every such object's drift > "
                     f"{WELL_FORMED_MAX_DRIFT:g})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="+", help="toy task names")
    parser.add_argument("--n", type=int, default=256, help="images per task (default 256)")
    parser.add_argument("--seed", type=int, default=777, help="evaluation seed (default 777)")
    parser.add_argument("--run", type=Path, default=None, help="a run folder: use its last adapter (lora/)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sampler = toy_sampler_config()
    if args.run is None:
        backbone = load_backbone(resolve_backbone(TOY_BACKBONE))
    else:  # the run's own backbone, adapter and sampler (as scripts/trained_samples.py loads them)
        cfg = load_config_file(args.run / "config.yaml")
        backbone = load_backbone(resolve_backbone(cfg.backbone))
        add_lora(backbone.unet, cfg.lora)
        adapters = sorted((args.run / "lora").glob("epoch_*.safetensors"))
        if not adapters:
            parser.error(f"{args.run / 'lora'} holds no adapter (epoch_*.safetensors)")
        load_lora(backbone.unet, adapters[-1])
        sampler = cfg.sampler
    for name in args.tasks:
        task = get_task(name)
        # the evaluation protocol itself, keeping each image's verdict with the oracle's details
        judged = sample_and_judge(backbone, task.train_prompts, task.oracle_factory(), sampler,
                                  EvalConfig(n_images=args.n, seed=args.seed, batch_size=128))
        print(breakdown(judged, task))


if __name__ == "__main__":
    main()
