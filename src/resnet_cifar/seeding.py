"""Seeds for a run's independent random streams (weights, data order, augmentation, the whitening sample), each derived
from the run's seed and a stream number, so that no stream shifts another and any can be recreated after a resume."""

from __future__ import annotations

import numpy as np

# The streams derived from a run's seed, each by its own number (a number, once used, keeps its meaning: changing it
# would change every run's results).
BATCH_STREAM = 1  # the training batches: each epoch's order and augmentation draws derive from this stream's seed
WHITENING_SAMPLE = 2  # the 5,000 training images a patch-whitening stem is fitted on
GRADIENT_FLOW_STEPS = 7  # the gradient-flow experiment's training steps (derive_seed(seed, 7, step))


def derive_seed(*numbers: int) -> int:
    """A well-mixed 63-bit seed from several integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(n) for n in numbers]).generate_state(1, dtype=np.uint64)[0] >> 1)
