"""Seeds of independent random streams, derived from (seed, epoch, purpose).

Every random draw in hero-bench comes from a generator made fresh for one stream: training draws
from (run seed, epoch, purpose) (``hero_bench.algorithms.base.RunContext``), evaluation from
(``eval.seed``, 0, "eval-noise" / "eval-sampler") (``hero_bench.evaluate``).  Nothing keeps a
running stream, so the state of every generator at a given epoch is a pure function of the seed
and the epoch number.
"""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, epoch: int, purpose: str) -> int:
    """A 63-bit seed for the stream (run seed, epoch, purpose); stable across Python runs."""
    ss = np.random.SeedSequence([int(seed), int(epoch), zlib.crc32(purpose.encode())])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
