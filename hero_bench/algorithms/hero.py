"""HERO: feedback-aligned representation learning + feedback-guided image generation (docs/algorithms.md §4).

One epoch, top to bottom (Algorithm 1 as quoted in docs/algorithms.md §4.1):

1. sample      initial noise from π_HERO (N(0, I) in the first epoch, then the best/good mixture
               of step 6), generate images with the current LoRA weights;
2. label       the evaluator marks every image good or bad and picks a best (§4.2; the evaluator
               maps a later-epoch best pick to a BATCH index, fixing released-code bug §4.12.1);
3. represent   train the embedding net E and head g with a per-sample triplet loss (§4.3):
               anchor = the current best's latent, positive = a random good latent, negative = a
               random bad latent, fresh triplets every pass;
4. reward      r(z) = (1 + cos(E z, E z_best)) / 2 for every image (§4.4);
5. update      batch-standardised, clipped advantages; the shared PPO-clip pass on K random
               timesteps per trajectory (§4.6, ``kernels.ppo_update``);
6. π_HERO      next epoch's noise: the first ⌊β·n⌋ samples perturb the best image's noise, the
               rest perturb uniformly random good noises, z' = √(1−ε²)·z + ε·N(0, I) (§4.5).

The "latent" E sees is the input of the last denoising step (``latents[:, -2]``, t = 1 in SD),
as in the released code.  The current best (its latent, noise and id) persists across epochs
until the evaluator picks a better image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hero_bench.algorithms.base import Batch, PPOMethod, RunContext, load_optimizer_state, optimizer_state
from hero_bench.algorithms.kernels import PPOConfig, standardize
from hero_bench.errors import ConfigError
from hero_bench.feedback import BestImage, HeroFeedback
from hero_bench.seeding import derive_seed

# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeroConfig:
    """HERO's settings. Defaults: the paper's Table 7 (docs/algorithms.md §4.0), where it states a value."""

    images_per_epoch: int = 64
    """Images sampled and labelled per epoch (paper: 64; 128 for hand)."""
    best_ratio: float = 0.5
    """β: the first ⌊β·n⌋ initial noises of the next epoch perturb the best image's noise (§4.5)."""
    noise_scale: float = 0.1
    """ε: next noise z' = √(1−ε²)·z + ε·N(0, I), so the marginal variance stays ≈ 1 (§4.5)."""
    noise_guidance: bool = True
    """Feedback-guided generation (§4.5); False = every epoch samples z_T ~ N(0, I) (ablation)."""
    reward_mode: Literal["similarity-to-best", "similarity-to-positives", "binary"] = "similarity-to-best"
    """Reward: (1+cos)/2 to the best's embedding (paper); mean (1+cos)/2 to the best and this
    epoch's positives (the released code's alternative); or 1 for good / 0 for bad images (ablation:
    no learned representation in the reward)."""
    embedding_dim: int = 2048
    """Output width of the embedding net E (Linear → ReLU after the conv stack)."""
    head_hidden_dims: tuple[int, ...] = (2048, 1024)
    """Hidden widths of the projection head g (each Linear → ReLU)."""
    head_out_dim: int = 512
    """Output width of g (no final activation); the triplet loss lives in this space."""
    embedding_lr: float = 1e-5
    """Adam learning rate of E and g (no weight decay)."""
    triplet_margin: float = 0.5
    """Triplet margin α (Table 7: 0.5)."""
    triplet_passes: int = 500
    """Adam steps on E and g per epoch of feedback, each on freshly drawn triplets (paper: 500)."""
    triplet_cosine: Literal["per-sample", "across-batch"] = "per-sample"
    """Cosine distance of the triplet loss along the feature axis of each triplet (paper) or along
    the batch axis per feature (the released code's ``dim=0``, docs/algorithms.md §4.12.2)."""
    # Table 7 (docs/algorithms.md §4.0): lr 3e-4 (the released code's 1e-3 is not used), batch 2, grad-accum 4,
    # clip 1e-4, K = 5 trained timesteps per trajectory; adv clip 5, batch standardisation (§4.6)
    ppo: PPOConfig = PPOConfig(lr=3e-4, train_batch_size=2, grad_accum_steps=4, clip_range=1e-4, adv_clip=5.0,
                               timesteps_per_sample=5)
    """The PPO-clip update of the LoRA weights (shared kernel with DDPO)."""

    def __post_init__(self) -> None:
        if self.images_per_epoch < 2:
            raise ConfigError(f"hero.images_per_epoch must be >= 2 (one good and one bad), got {self.images_per_epoch}")
        if not 0.0 <= self.best_ratio <= 1.0:
            raise ConfigError(f"hero.best_ratio must be in [0, 1], got {self.best_ratio}")
        if not 0.0 <= self.noise_scale <= 1.0:
            raise ConfigError(f"hero.noise_scale must be in [0, 1], got {self.noise_scale}")
        if self.triplet_passes < 0:
            raise ConfigError(f"hero.triplet_passes must be >= 0, got {self.triplet_passes}")
        if self.embedding_dim < 1 or self.head_out_dim < 1 or any(d < 1 for d in self.head_hidden_dims):
            raise ConfigError("hero.embedding_dim, hero.head_hidden_dims and hero.head_out_dim must be positive")


# --------------------------------------------------------------------------------------------
# Networks and losses (§4.3)
# --------------------------------------------------------------------------------------------


class EmbeddingNet(nn.Module):
    """E: 3 × (conv 3×3 → ReLU → maxpool 2) with 8/16/32 channels, flatten, Linear → ReLU.

    Sized from the latent shape (4×64×64 in SD 1.5 → 32×8×8 = 2048 features).  Pooling rounds up,
    so latents smaller than 8 pixels still work.  The final ReLU makes embeddings non-negative, so
    cosine similarities (and the reward) lie in [0, 1] / [0.5, 1].
    """

    def __init__(self, latent_shape: tuple[int, int, int], embedding_dim: int):
        super().__init__()
        channels, height, width = latent_shape
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in (8, 16, 32):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(32 * height * width, embedding_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.features(z).flatten(1)))


class ProjectionHead(nn.Module):
    """g: Linear → ReLU per hidden width, then a final Linear (used only inside the triplet loss)."""

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...], out_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden_dims:
            layers += [nn.Linear(in_dim, h), nn.ReLU()]
            in_dim = h
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def cosine_distance(u: torch.Tensor, v: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """d(u, v) = 1 − (1 + cos(u, v))/2 = (1 − cos(u, v))/2, in [0, 1]."""
    return (1.0 - F.cosine_similarity(u, v, dim=dim)) / 2.0


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float,
                 across_batch: bool = False) -> torch.Tensor:
    """mean max(d(a, p) − d(a, n) + margin, 0) over triplets ``[B, D]`` (§4.3, "Eq. 3").

    ``across_batch=True`` reproduces the released code's ``cosine_similarity(dim=0)``: one cosine per
    FEATURE computed across the batch, averaged over the D features (docs/algorithms.md §4.12.2).
    """
    dim = 0 if across_batch else -1
    return torch.clamp(cosine_distance(anchor, positive, dim) - cosine_distance(anchor, negative, dim) + margin,
                       min=0.0).mean()


def reward_auc(rewards: np.ndarray, good: np.ndarray) -> float:
    """P(reward of a random good image > that of a random bad one), ties counting half (AUROC).

    1: the reward ranks every good image above every bad one; 0.5: no better than chance; NaN when
    the batch has only one class."""
    # deferred: scipy (0.3 s; only this diagnostic needs it)
    from scipy.stats import rankdata

    good = np.asarray(good, dtype=bool)
    n_good, n_bad = int(good.sum()), int((~good).sum())
    if n_good == 0 or n_bad == 0:
        return float("nan")
    ranks = rankdata(rewards)  # average ranks for ties (Mann-Whitney U)
    return float((ranks[good].sum() - n_good * (n_good + 1) / 2) / (n_good * n_bad))


def guided_noise(best_noise: torch.Tensor, good_noises: torch.Tensor, n: int, best_ratio: float,
                 noise_scale: float, generator: torch.Generator) -> torch.Tensor:
    """π_HERO (§4.5): ``n`` initial noises around the best noise and the good noises.

    The split is deterministic: samples 0 … ⌊β·n⌋−1 start from the best noise, the others from a
    uniformly random good noise (with replacement).  Each is √(1−ε²)·z + ε·N(0, I).  With no good
    noise besides the best (the released code crashes there, §4.12.3) every sample starts from the
    best noise.  Tensors on the generator's device (CPU); shapes ``[C,H,W]``, ``[M,C,H,W]``.
    """
    n_best = n if good_noises.shape[0] == 0 else math.floor(best_ratio * n)
    choice = torch.randint(good_noises.shape[0] or 1, (n - n_best,), generator=generator)
    base = torch.cat([best_noise.unsqueeze(0).expand(n_best, *best_noise.shape), good_noises[choice]])
    eps = torch.randn(base.shape, generator=generator)
    return math.sqrt(1.0 - noise_scale**2) * base + noise_scale * eps


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


class Hero(PPOMethod):
    name = "hero"
    min_batch = 2  # the protocol needs one good and one bad image
    cfg: HeroConfig

    def __init__(self, ctx: RunContext):
        super().__init__(ctx, ctx.settings)
        # E and g are initialised from the run seed (torch's init draws from the global RNG, so it
        # runs inside a forked, seeded RNG and leaves the caller's state untouched)
        device = ctx.backbone.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(ctx.seed, 0, "hero-networks"))
            self.embed = EmbeddingNet(tuple(ctx.backbone.latent_shape), self.cfg.embedding_dim)
            self.head = ProjectionHead(self.cfg.embedding_dim, tuple(self.cfg.head_hidden_dims), self.cfg.head_out_dim)
        self.embed.to(device)
        self.head.to(device)
        # Adam, no weight decay (Table 7); networks and optimizer persist across epochs (continual)
        self.embed_optimizer = torch.optim.Adam(list(self.embed.parameters()) + list(self.head.parameters()),
                                                lr=self.cfg.embedding_lr, betas=(0.9, 0.999), weight_decay=0.0)
        self.best: BestImage | None = None
        self.best_latent: torch.Tensor | None = None  # [C,H,W] input of the best's last denoising step
        self.best_noise: torch.Tensor | None = None  # [C,H,W] the best's z_T (CPU)
        self.good_noises = torch.empty(0)  # [M,C,H,W] z_T of the last epoch's good images, best excluded (CPU)

    # 1. sample ---------------------------------------------------------------------------------
    def sample(self, epoch: int, n: int) -> Batch:
        prompts = self.draw_prompts(epoch, n)
        if not self.cfg.noise_guidance or self.best_noise is None:
            z_T = self.gaussian_noise(epoch, n)  # the first epoch, or guidance switched off
        else:
            z_T = guided_noise(self.best_noise, self.good_noises, n, self.cfg.best_ratio, self.cfg.noise_scale,
                               self.ctx.generator(epoch, "noise")).to(self.ctx.backbone.device)
        return self.sample_batch(epoch, prompts, z_T)

    # 2. label ----------------------------------------------------------------------------------
    def label(self, epoch: int, batch: Batch) -> HeroFeedback:
        return self.ctx.evaluator.hero(batch.traj.images, batch.texts, batch.metadata, epoch, self.best)

    # 3.–6. update -------------------------------------------------------------------------------
    def update(self, epoch: int, batch: Batch, fb: HeroFeedback) -> dict[str, float]:
        traj = batch.traj
        feats = traj.latents[:, -2].float()  # input of the last denoising step (§4.3)

        # the best: a new one (from this batch) replaces latent, noise and id; otherwise it stays
        if fb.best_index is not None:
            self.best_latent = feats[fb.best_index].clone()
            self.best_noise = traj.z_T[fb.best_index].detach().cpu().clone()
        self.best = fb.best
        # positives exclude a best chosen from this batch (it is the anchor, §4.2 bookkeeping)
        positive_mask = fb.good.copy()
        if fb.best_index is not None:
            positive_mask[fb.best_index] = False
        positives = np.flatnonzero(positive_mask)
        negatives = np.flatnonzero(~fb.good)

        # how well the representation learned from earlier rounds ranks this round's new images
        # (a diagnostic only: the rewards PPO uses come from the embedding retrained below)
        prior_auc = reward_auc(self.rewards(feats, fb.good, positives), fb.good) if epoch > 1 else float("nan")
        metrics = self.train_representation(epoch, feats, positives, negatives)
        self.ctx.reached(f"epoch{epoch}.after_embedding")

        rewards = self.rewards(feats, fb.good, positives)
        metrics |= self.ppo_step(epoch, traj, standardize(rewards))

        # π_HERO for the next epoch: this batch's good noises (best excluded) + the best's noise
        self.good_noises = traj.z_T[torch.as_tensor(positives, dtype=torch.long)].detach().cpu().clone()

        metrics |= {
            "train_success": float(fb.good.mean()),
            "reward_mean": float(np.mean(rewards)),
            "reward_std": float(np.std(rewards)),
            "reward_auc": reward_auc(rewards, fb.good),
            "reward_auc_prior": prior_auc,
            "n_good": float(fb.good.sum()),
            "best_changed": float(fb.best_index is not None),
            "best_score": float(fb.best.score),
            "feedback_fallback": float(fb.fallback is not None),
        }
        return metrics

    def train_representation(self, epoch: int, feats: torch.Tensor, positives: np.ndarray,
                              negatives: np.ndarray) -> dict[str, float]:
        """``triplet_passes`` Adam steps on E and g, each on N fresh (best, good, bad) triplets (§4.3).

        N = the number of labelled images (the released dataset's length); all N triplets form one
        minibatch.  With no positive besides the best, the anchor is its own positive (d = 0): the
        loss then only pushes the bad images away from the best (the released code crashes, §4.12.3).
        """
        passes = self.cfg.triplet_passes
        if passes == 0 or len(negatives) == 0:
            return {}
        g = self.ctx.generator(epoch, "triplets")
        n = feats.shape[0]
        device = feats.device
        x = torch.cat([self.best_latent.unsqueeze(0), feats])  # row 0 = anchor, rows 1.. = the batch
        pos_pool = torch.as_tensor(positives, dtype=torch.long) + 1
        neg_pool = torch.as_tensor(negatives, dtype=torch.long) + 1
        across = self.cfg.triplet_cosine == "across-batch"
        first = last = 0.0
        for p in range(passes):
            pos = pos_pool[torch.randint(len(pos_pool), (n,), generator=g)] if len(pos_pool) else torch.zeros(n, dtype=torch.long)
            neg = neg_pool[torch.randint(len(neg_pool), (n,), generator=g)]
            # every latent is embedded once per pass, then gathered into triplets (same gradient)
            proj = self.head(self.embed(x))
            anchor = proj[:1].expand(n, -1)
            loss = triplet_loss(anchor, proj[pos.to(device)], proj[neg.to(device)], self.cfg.triplet_margin, across)
            self.embed_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.embed_optimizer.step()
            if p == 0:
                first = loss.item()
            last = loss.item()
        return {"triplet_loss_first": first, "triplet_loss": last}

    @torch.no_grad()
    def rewards(self, feats: torch.Tensor, good: np.ndarray, positives: np.ndarray) -> np.ndarray:
        """Reward of every image (§4.4); bad images get no special treatment."""
        mode = self.cfg.reward_mode
        if mode == "binary":
            return good.astype(np.float64)
        e = self.embed(feats)
        if mode == "similarity-to-best":
            ref = self.embed(self.best_latent.unsqueeze(0))
            r = (1.0 + F.cosine_similarity(e, ref, dim=-1)) / 2.0
        else:  # similarity-to-positives: mean over the best and this epoch's other positives
            refs = torch.cat([self.best_latent.unsqueeze(0), feats[torch.as_tensor(positives, dtype=torch.long)]])
            ref = self.embed(refs)
            r = ((1.0 + F.cosine_similarity(e[:, None, :], ref[None, :, :], dim=-1)) / 2.0).mean(dim=1)
        return r.double().cpu().numpy()

    # checkpoint ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            **optimizer_state(self.optimizer, self.warmup),
            "embed": self.embed.state_dict(),
            "head": self.head.state_dict(),
            "embed_optimizer": self.embed_optimizer.state_dict(),
            "best": None if self.best is None else self.best.to_dict(),
            "best_latent": None if self.best_latent is None else self.best_latent.cpu(),
            "best_noise": self.best_noise,
            "good_noises": self.good_noises,
        }

    def load_state_dict(self, state: dict) -> None:
        device = self.ctx.backbone.device
        load_optimizer_state(self.optimizer, self.warmup, state)
        self.embed.load_state_dict(state["embed"])
        self.head.load_state_dict(state["head"])
        self.embed_optimizer.load_state_dict(state["embed_optimizer"])
        self.best = None if state["best"] is None else BestImage.from_dict(state["best"])
        self.best_latent = None if state["best_latent"] is None else state["best_latent"].to(device)
        self.best_noise = state["best_noise"]
        self.good_noises = state["good_noises"]
