"""Seeds for the independent random streams of a run (weight init, data order, augmentation, the whitening sample).

Each stream gets its own seed derived from the run's seed and a stream number, so changing one stream (say, more
augmentation draws) never shifts another, and a resumed or multi-process run can recreate any of them exactly.
"""

from __future__ import annotations

import numpy as np


def derive_seed(*numbers: int) -> int:
    """A well-mixed 63-bit seed from several integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(n) for n in numbers]).generate_state(1, dtype=np.uint64)[0] >> 1)
