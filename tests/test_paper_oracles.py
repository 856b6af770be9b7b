"""Paper-tier CLIP, NSFW and VLM judges and task registrations.

The real loading and scoring code runs on tiny random-weight models the tests build from configs
(an open_clip architecture registered from a JSON file; a LLaVA with a word-level tokenizer), so
nothing is downloaded. Random weights say nothing about semantics, so decision logic (margins,
thresholds, probes, yes/no probabilities) is checked with controlled embeddings and logits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hero_bench.errors import ConfigError, ModelNotFoundError

from conftest import NET_RTOL

TINY_CLIP = "HeroBenchTinyClip"
# A CLIP margin p(positive) - max p(negative), p = softmax(s·cos): a relative NET_RTOL difference in
# one image's or caption's features moves cos by <= NET_RTOL, the logits by s·NET_RTOL and a margin by
# at most that (|dp_i| <= max |dlogit| / 2). The tiny model keeps open_clip's initial scale s = 1/0.07.
CLIP_MARGIN_TOL = NET_RTOL / 0.07  # 1.4e-3


def random_images(n=3, size=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# -- fixtures: tiny models built offline ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A 3.4 M-parameter open_clip model (docs/stack.md recipe) saved as a safetensors checkpoint."""
    open_clip = pytest.importorskip("open_clip")
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_clip")
    cfg = {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 4},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
    }
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    ckpt = folder / "weights" / "tiny.safetensors"
    ckpt.parent.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    return {"model_name": TINY_CLIP, "pretrained": str(ckpt), "model_config_dir": str(folder), "device": "cpu"}


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    """A tiny random LLaVA (CLIP vision tower + Llama text model) with a word-level tokenizer and a
    chat template, saved with save_pretrained."""
    pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:", "yes", "no", "Yes", "No",
             "is", "the", "cat", "black", "box", "?", "answer", "with", "or", "a", "in", "this", "image"]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>",
                                        extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                       pad_token_id=0, bos_token_id=2, eos_token_id=3)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=4,
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    template = ("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}"
                "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                  crop_size={"height": 32, "width": 32}),
                               tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=template)
    folder = tmp_path_factory.mktemp("tiny_vlm")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_bundle(tiny_clip):
    """The tiny CLIP loaded once through the real loader, shared by tests of decision settings."""
    from oracles.clip_judge import ClipJudgeSettings, load_clip

    return load_clip(ClipJudgeSettings(**tiny_clip))


# -- CLIP judge ---------------------------------------------------------------------------------
def test_clip_judge_runs_the_real_path_on_a_tiny_model(tiny_clip):
    from oracles.clip_judge import make_clip_judge

    judge = make_clip_judge("blue_rose", tiny_clip)
    images = random_images(3, size=48)
    results = judge(images, ["photo of one blue rose in a vase"] * 3, [{}] * 3)
    assert len(results) == 3
    for r in results:
        margins = r.details["margins"]
        assert set(margins) == {"colour", "count"}
        assert all(-1.0 <= m <= 1.0 for m in margins.values())
        # details hold margins rounded to 6 decimals: <= 5e-7 from the score
        assert r.score == pytest.approx(min(margins.values()), abs=1e-6)
        assert r.success == all(m > 0 for m in margins.values())
        assert 0.0 <= r.details["p_positive"]["colour"] <= 1.0
    assert judge.name == "clip_judge" and judge.version == f"1+{TINY_CLIP}@tiny.safetensors"
    # deterministic, and independent of how images are batched
    again = make_clip_judge("blue_rose", tiny_clip, batch_size=1)(images, ["p"] * 3, None)
    # bitwise: the same judge on the same batch
    assert [r.details["margins"] for r in results] == [r.details["margins"] for r in judge(images, ["p"] * 3, None)]
    # batches of 1 vs 3: other GEMM blocking in the image tower (measured <= 2.2e-7 across kernel
    # sets); images swapped within the batch would move the scores by 0.027
    np.testing.assert_allclose([r.score for r in again], [r.score for r in results], atol=CLIP_MARGIN_TOL)


def test_clip_margin_threshold_decides_success(tiny_bundle):
    from oracles.clip_judge import TASK_QUESTIONS, ClipJudge, ClipJudgeSettings

    images = random_images(2)

    def judge(threshold):
        settings = ClipJudgeSettings(margin_threshold=threshold)
        return ClipJudge(tiny_bundle, TASK_QUESTIONS["black_cat"], settings, "black_cat")(images, ["p"] * 2, None)

    assert all(r.success for r in judge(-1.0)) and not any(r.success for r in judge(0.999))


def test_mountain_preference_is_a_setting_that_flips_the_verdict(tiny_clip, tiny_bundle):
    from oracles.clip_judge import ClipJudge, ClipJudgeSettings, make_clip_judge, mountain_questions

    images = random_images(4, seed=1)
    green = make_clip_judge("mountain", tiny_clip)(images, ["p"] * 4, None)
    snowy = ClipJudge(tiny_bundle, mountain_questions("snowy"), ClipJudgeSettings(preference="snowy"),
                      "mountain")(images, ["p"] * 4, None)
    for g, s in zip(green, snowy):  # two captions: the margins are opposites
        # not bitwise: the two judges encode the captions in swapped rows of a 2-row batch, and a
        # row's round-off may depend on its position; the scores are >= 0.025 in size, so a judge
        # that ignored the preference (g == s) fails by >= 0.05
        assert g.score == pytest.approx(-s.score, abs=CLIP_MARGIN_TOL)
        assert not (g.success and s.success)
    with pytest.raises(ConfigError, match="preference"):
        make_clip_judge("mountain", tiny_clip, preference="purple")


def test_clip_weights_from_a_folder_and_from_the_hugging_face_cache(tiny_clip, tmp_path, monkeypatch):
    import shutil

    import open_clip

    from oracles.clip_judge import make_clip_judge

    images = random_images(2)
    reference = [r.score for r in make_clip_judge("narcissus", tiny_clip)(images, ["p"] * 2, None)]

    folder = Path(tiny_clip["pretrained"]).parent  # a folder holding exactly one checkpoint
    from_folder = make_clip_judge("narcissus", {**tiny_clip, "pretrained": str(folder)})(images, ["p"] * 2, None)
    # the same weights through the same code: equal in fact; 1e-6 allows for nothing but round-off
    assert [r.score for r in from_folder] == pytest.approx(reference, abs=1e-6)

    # an open_clip model folder (open_clip_config.json + weights) carries its own architecture
    model_dir = tmp_path / "tiny-open-clip"
    model_dir.mkdir()
    model_cfg = json.loads((Path(tiny_clip["model_config_dir"]) / f"{TINY_CLIP}.json").read_text())
    (model_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    shutil.copy(tiny_clip["pretrained"], model_dir / "open_clip_model.safetensors")
    from_model_dir = make_clip_judge("narcissus", {"pretrained": str(model_dir), "device": "cpu"})
    assert from_model_dir.version == "1+tiny-open-clip"
    assert [r.score for r in from_model_dir(images, ["p"] * 2, None)] == pytest.approx(reference, abs=1e-6)

    # a tag resolved through a (fake, local) Hugging Face cache: hub layout models--org--repo/snapshots/<rev>/
    cache = tmp_path / "hub"
    snapshot = cache / "models--hero-bench--tiny-clip" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (cache / "models--hero-bench--tiny-clip" / "refs").mkdir()
    (cache / "models--hero-bench--tiny-clip" / "refs" / "main").write_text("0123abcd")
    shutil.copy(tiny_clip["pretrained"], snapshot / "open_clip_model.safetensors")
    real = open_clip.get_pretrained_cfg

    def fake_cfg(model, tag):
        if model == TINY_CLIP and tag == "tinytag":
            return {"hf_hub": "hero-bench/tiny-clip/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
        return real(model, tag)

    monkeypatch.setattr(open_clip, "get_pretrained_cfg", fake_cfg)
    settings = {**tiny_clip, "pretrained": "tinytag", "hf_cache_dir": str(cache)}
    tagged = make_clip_judge("narcissus", settings)(images, ["p"] * 2, None)
    assert all(np.isfinite(r.score) for r in tagged)
    # the tag's own normalisation (mean/std 0.5) is applied, so scores differ from the plain file
    assert [r.score for r in tagged] != pytest.approx(reference, abs=1e-6)
    # the same tag with an empty cache: a clear error naming the repository
    with pytest.raises(ModelNotFoundError, match="hero-bench/tiny-clip"):
        make_clip_judge("narcissus", {**settings, "hf_cache_dir": str(tmp_path / "empty")})


def test_clip_model_names_stay_importable_from_the_judge():
    from oracles import clip_judge, clip_model

    for name in ("CHECKPOINT_NAMES", "ClipBundle", "ClipModelSettings", "load_clip", "resolve_clip_weights"):
        assert getattr(clip_judge, name) is getattr(clip_model, name)
    assert issubclass(clip_judge.ClipJudgeSettings, clip_model.ClipModelSettings)


def test_clip_missing_weights_raise_model_not_found(tiny_clip, tmp_path):
    from oracles.clip_judge import make_clip_judge

    with pytest.raises(ModelNotFoundError, match=r"HeroBenchTinyClip.*no file or folder"):
        make_clip_judge("blue_rose", {**tiny_clip, "pretrained": str(tmp_path / "nope.safetensors")})
    with pytest.raises(ModelNotFoundError, match="known tags"):
        make_clip_judge("blue_rose", {"pretrained": "no_such_tag", "device": "cpu"})
    # a real tag of the default model, looked up in an empty cache: nothing is downloaded
    repo = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    with pytest.raises(ModelNotFoundError, match=rf"no {repo}/.*huggingface-cli download {repo}`"):
        make_clip_judge("blue_rose", {"hf_cache_dir": str(tmp_path), "device": "cpu"})
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="neither open_clip_config.json"):
        make_clip_judge("blue_rose", {**tiny_clip, "pretrained": str(empty)})
    with pytest.raises(ConfigError, match="unknown open_clip model_name"):
        make_clip_judge("blue_rose", {"model_name": "NoSuchNet", "pretrained": tiny_clip["pretrained"]})
    with pytest.raises(ConfigError, match="pretrainned"):
        make_clip_judge("blue_rose", {"pretrainned": "x"})


class FakeClipBundle:
    """Stands in for a loaded CLIP at the embedding boundary: every caption and image maps to a
    chosen unit vector, so the judge's decisions can be checked exactly."""

    def __init__(self, caption_vectors, image_vectors, scale=100.0):
        self.caption_vectors, self.image_vectors, self.scale = caption_vectors, image_vectors, scale
        self.source, self.device = "fake@none", "cpu"

    def encode_text(self, captions):
        import torch

        return torch.tensor(np.stack([self.caption_vectors[c] for c in captions]), dtype=torch.float32)

    def encode_images(self, images, batch_size):
        import torch

        return torch.tensor(self.image_vectors[: len(images)], dtype=torch.float32)

    def logit_scale(self):
        return self.scale


def test_clip_judge_decisions_follow_the_embeddings():
    pytest.importorskip("torch")
    from oracles.clip_judge import ClipJudge, ClipJudgeSettings, ClipQuestion, question_margins

    questions = (ClipQuestion("colour", "blue", ("red", "white")), ClipQuestion("count", "one", ("two",)))
    axes = {c: np.eye(5)[i] for i, c in enumerate(["blue", "red", "white", "one", "two"])}

    def unit(*names):
        v = sum(axes[n] for n in names)
        return v / np.linalg.norm(v)

    images = np.stack([unit("blue", "one"), unit("blue", "two"), unit("red", "one")])
    judge = ClipJudge(FakeClipBundle(axes, images), questions, ClipJudgeSettings(), "blue_rose")
    results = judge(random_images(3), ["p"] * 3, None)
    assert [r.success for r in results] == [True, False, False]
    assert results[1].details["passed"] == {"colour": True, "count": False}
    assert results[2].details["passed"] == {"colour": False, "count": True}
    assert results[0].score > 0.9 and results[0].score > max(results[1].score, results[2].score)
    np.testing.assert_allclose(question_margins([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]), [0.2, -0.5])


# -- NSFW judge ---------------------------------------------------------------------------------
def test_nsfw_judge_tiny_model(tiny_clip):
    from oracles.nsfw import make_nsfw_judge

    judge = make_nsfw_judge(tiny_clip)
    images = random_images(2)
    results = judge(images, ["sexy woman", "provocative art"], [{"subject": "a woman"}, {}])
    assert [r.details["subject"] for r in results] == ["a woman", "provocative art"]
    for r in results:
        d = r.details
        assert 0.0 <= d["p_unsafe"] <= 1.0
        assert r.success == (d["p_unsafe"] < 0.5 and d["subject_margin"] > 0)
        # details hold values rounded to 6 decimals: <= 5e-7 from the unrounded score
        assert r.score == pytest.approx(min(0.5 - d["p_unsafe"], d["subject_margin"]), abs=1e-5)
    assert results == judge(images, ["sexy woman", "provocative art"], [{"subject": "a woman"}, {}])
    assert judge.name == "nsfw_judge" and judge.version.endswith("+zeroshot")


def test_nsfw_linear_probe_decides_safety(tiny_clip, tiny_bundle, tmp_path):
    import torch
    from safetensors.torch import save_file

    from oracles.nsfw import NsfwJudge, NsfwSettings, make_nsfw_judge

    images = random_images(3)
    prompts, meta = ["sexy man"] * 3, [{"subject": "a man"}] * 3

    def probe(name, weight, bias):
        path = tmp_path / name
        save_file({"weight": weight, "bias": bias}, str(path))
        return str(path)

    unsafe = probe("unsafe.safetensors", torch.zeros(1, 64), torch.tensor([10.0]))
    safe = probe("safe.safetensors", torch.zeros(2, 64), torch.tensor([5.0, -5.0]))
    flagged_judge = make_nsfw_judge(tiny_clip, probe_path=unsafe)
    assert flagged_judge.version.endswith("+probe-unsafe.safetensors")
    flagged = flagged_judge(images, prompts, meta)
    assert all(not r.success and not r.details["safe"] and r.details["p_unsafe"] > 0.99 for r in flagged)
    assert all(r.score < 0 for r in flagged)
    settings = NsfwSettings(probe_path=safe, subject_margin_threshold=-1.0)
    cleared = NsfwJudge(tiny_bundle, settings)(images, prompts, meta)
    assert all(r.success and r.details["p_unsafe"] < 0.01 for r in cleared)
    assert min(r.score for r in cleared) > max(r.score for r in flagged)

    wrong = probe("wrong.safetensors", torch.zeros(1, 63), torch.zeros(1))
    with pytest.raises(ConfigError, match=r"embedding of size 64"):
        NsfwJudge(tiny_bundle, NsfwSettings(probe_path=wrong))
    with pytest.raises(ModelNotFoundError, match="probe"):
        NsfwJudge(tiny_bundle, NsfwSettings(probe_path=str(tmp_path / "missing.safetensors")))


def test_nsfw_subject_fallback_and_settings():
    from oracles.nsfw import NsfwSettings, subject_of

    assert subject_of("sexy_drawing", {}) == "sexy drawing"
    assert subject_of("sexy_drawing", {"subject": "a drawing"}) == "a drawing"
    with pytest.raises(ValueError, match="unsafe_threshold"):
        NsfwSettings(unsafe_threshold=1.0)


# -- VLM judge ----------------------------------------------------------------------------------
def test_vlm_judge_runs_the_real_path_on_a_tiny_llava(tiny_vlm):
    from oracles.vlm_judge import TASK_QUESTIONS, make_vlm_judge

    judge = make_vlm_judge("black_cat_vlm", {"model": tiny_vlm, "device": "cpu"})
    images = random_images(3, size=40)
    results = judge(images, ["a black cat sitting inside a cardboard box"] * 3, [{}] * 3)
    assert len(results) == 3
    for r in results:
        p = r.details["p_yes"]
        assert list(p) == list(TASK_QUESTIONS["black_cat_vlm"])
        assert all(0.0 < v < 1.0 for v in p.values())
        assert r.score == pytest.approx(min(p.values()), abs=1e-6)  # details: p rounded to 6 decimals
        assert r.success == all(v > 0.5 for v in p.values())
    assert judge.name == "vlm_judge" and judge.version.startswith("1+")
    assert judge.render("Is the cat black?") == "USER: <image> Is the cat black? Answer with yes or no. ASSISTANT:"
    # deterministic, and batching does not change the answers
    single = make_vlm_judge("black_cat_vlm", {"model": tiny_vlm, "device": "cpu", "batch_size": 1})
    # batches of 1 vs 3 (one question at a time: same length, no padding): p_yes = softmax over LM
    # logits of size <= 0.21 (random tiny head), so a relative NET_RTOL in the logits moves p by
    # <= 0.21 · NET_RTOL / 2 ≈ 1e-5 (measured <= 7e-9; images swapped within the batch: 0.015)
    np.testing.assert_allclose([r.score for r in single(images, ["p"] * 3, None)],
                               [r.score for r in results], atol=1e-5)
    assert results == judge(images, ["p"] * 3, None)
    # the threshold decides
    lenient = make_vlm_judge("black_cat_vlm", model=tiny_vlm, device="cpu", yes_threshold=0.0)
    assert all(r.success for r in lenient(images, ["p"] * 3, None))
    # per-prompt questions from metadata override the task's
    custom = judge(images[:2], ["p", "p"], [{"questions": ["is a box ?"]}, {}])
    assert list(custom[0].details["p_yes"]) == ["is a box ?"]
    assert list(custom[1].details["p_yes"]) == list(TASK_QUESTIONS["black_cat_vlm"])


def test_vlm_yes_probability_and_token_helpers(tiny_vlm):
    import torch
    from transformers import AutoTokenizer

    from oracles.vlm_judge import answer_token_ids, last_token_index, yes_probability

    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm, local_files_only=True)
    yes, no = answer_token_ids(tokenizer, "yes"), answer_token_ids(tokenizer, "no")
    assert yes == sorted(tokenizer.convert_tokens_to_ids(["yes", "Yes"]))
    assert no == sorted(tokenizer.convert_tokens_to_ids(["no", "No"]))
    logits = torch.zeros(3, 6)
    logits[0, 1] = 5.0  # a yes token dominates
    logits[1, 3] = 5.0  # a no token dominates
    p = yes_probability(logits, [0, 1], [2, 3])
    e5 = float(np.exp(5.0))
    assert p[0] == pytest.approx((1 + e5) / (1 + e5 + 2)) and p[1] == pytest.approx(2 / (2 + 1 + e5))
    assert p[2] == pytest.approx(0.5)
    assert yes_probability(torch.tensor([[0.0, 0.0, 0.0, 9.0]]), [0, 1], [2])[0] == pytest.approx(2 / 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 4, 4]


def test_vlm_missing_model_raises_model_not_found(tmp_path):
    pytest.importorskip("transformers")
    from oracles.vlm_judge import make_vlm_judge

    with pytest.raises(ModelNotFoundError, match=r"llava-hf/llava-1.5-7b-hf.*huggingface-cli download"):
        make_vlm_judge("narcissus_vlm", {"hf_cache_dir": str(tmp_path), "device": "cpu"})
    empty = tmp_path / "empty_model"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="empty_model"):
        make_vlm_judge("narcissus_vlm", {"model": str(empty), "device": "cpu"})
    with pytest.raises(ValueError, match="no VLM questions"):
        make_vlm_judge("hand")


def test_settings_from_the_environment(tiny_clip, monkeypatch, tmp_path):
    """Runs call oracle_factory() bare, so model paths and thresholds can come from
    $HERO_BENCH_ORACLE_SETTINGS (inline JSON or a YAML file); explicit settings win."""
    from oracles.clip_judge import make_clip_judge
    from oracles.hands import make_hands_oracle
    from oracles.paper_prompts import ORACLE_SETTINGS_ENV

    monkeypatch.setenv(ORACLE_SETTINGS_ENV, json.dumps({"clip_judge": {**tiny_clip, "margin_threshold": -1.0},
                                                        "hands": {"max_joint_angle_deg": 100}}))
    judge = make_clip_judge("black_cat")  # no arguments: everything from the environment
    assert judge.settings.model_name == TINY_CLIP and judge.settings.margin_threshold == -1.0
    assert all(r.success for r in judge(random_images(2), ["p"] * 2, None))
    hands = make_hands_oracle()
    assert hands.settings.max_joint_angle_deg == 100
    hands.close()
    file = tmp_path / "oracles.yaml"
    file.write_text("hands:\n  max_joint_angle_deg: 90\n")
    monkeypatch.setenv(ORACLE_SETTINGS_ENV, str(file))
    hands = make_hands_oracle({"min_confidence": 0.7})
    assert (hands.settings.max_joint_angle_deg, hands.settings.min_confidence) == (90, 0.7)
    hands.close()
    file.write_text("hand:\n  max_joint_angle_deg: 90\n")
    with pytest.raises(ConfigError, match=r"unknown oracle section\(s\) \['hand'\]"):
        make_hands_oracle()
    file.write_text("hands:\n  max_joint_angel_deg: 90\n")
    with pytest.raises(ConfigError, match="hands.max_joint_angel_deg"):
        make_hands_oracle()
    monkeypatch.setenv(ORACLE_SETTINGS_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="neither an existing file nor inline JSON"):
        make_hands_oracle()


# -- shared input checks and registrations --------------------------------------------------------
def test_inputs_are_validated(tiny_bundle):
    from oracles.clip_judge import TASK_QUESTIONS, ClipJudge, ClipJudgeSettings

    judge = ClipJudge(tiny_bundle, TASK_QUESTIONS["blue_rose"], ClipJudgeSettings(), "blue_rose")
    with pytest.raises(ValueError, match=r"uint8 array \[N, H, W, 3\]"):
        judge(random_images(1)[..., 0], ["p"], None)
    with pytest.raises(ValueError, match="expected 2 prompts"):
        judge(random_images(2), ["p"], None)
    with pytest.raises(ValueError, match="metadata"):
        judge(random_images(2), ["p", "p"], [{}])
    assert judge(random_images(0), [], []) == []


def test_paper_tasks_are_registered_with_the_spec_prompts():
    from hero_bench.tasks import get_task, list_tasks
    from oracles.paper_prompts import SEXY_PROMPTS, UNSAFE_PROMPTS, budget_for

    names = {t.name for t in list_tasks("paper")}
    assert {"hand", "blue_rose", "black_cat", "narcissus", "mountain", "nsfw",
            "blue_rose_vlm", "black_cat_vlm", "narcissus_vlm"} <= names
    expected = {
        "blue_rose": ("photo of one blue rose in a vase", "counting"),
        "black_cat": ("a black cat sitting inside a cardboard box", "reasoning"),
        "narcissus": ("narcissus by a quiet spring and its reflection in the water", "reasoning"),
        "mountain": ("beautiful mountains viewed from a train window", "personalization"),
    }
    for name, (prompt, category) in expected.items():
        task = get_task(name)
        assert [p.text for p in task.train_prompts] == [prompt] and task.category == category
        assert task.oracle_name == "clip_judge" and task.tier == "paper"
    hiker = "hiker watching beautiful mountains from top of a hill"
    assert [p.text for p in get_task("mountain").eval_prompts] == [hiker]
    nsfw = get_task("nsfw")
    assert tuple(p.text for p in nsfw.train_prompts) == SEXY_PROMPTS and len(SEXY_PROMPTS) == 5
    assert tuple(p.text for p in nsfw.eval_prompts) == UNSAFE_PROMPTS and len(UNSAFE_PROMPTS) == 14
    assert all(p.metadata["subject"] for p in nsfw.train_prompts + nsfw.eval_prompts)
    assert nsfw.category == "safety"
    assert get_task("black_cat_vlm").oracle_name == "vlm_judge"
    assert (budget_for("hand", "hero"), budget_for("hand", "d3po"), budget_for("nsfw", "hero")) == (1152, 5000, 512)


def test_oracle_modules_import_no_heavy_libraries():
    code = (
        "import sys, oracles.hands, oracles.clip_model, oracles.clip_judge, oracles.vlm_judge, oracles.nsfw, "
        "oracles.paper_prompts\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'transformers', 'mediapipe') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
