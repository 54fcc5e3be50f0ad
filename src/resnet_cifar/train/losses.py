"""The training loss: cross-entropy (with label smoothing), plus AugMix's Jensen-Shannon consistency term when each
image comes as its clean view and two AugMix views (Hendrycks et al. 2020, eq. 1; weight 12 as in the paper)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

JSD_WEIGHT = 12.0


def jensen_shannon(probabilities: torch.Tensor) -> torch.Tensor:
    """JS(p_1, ..., p_V) = mean_v KL(p_v || M), M the views' mean, averaged over images; probabilities N x V x C."""
    mixture = probabilities.mean(dim=1, keepdim=True).clamp(1e-7, 1).log()
    return (probabilities * (probabilities.clamp_min(1e-12).log() - mixture)).sum(dim=2).mean()


def training_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float, views: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, the clean view's logits). With views = 3 the logits are image-major: clean, mix 1, mix 2 per image."""
    if views == 1:
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing), logits
    grouped = logits.float().view(len(labels), views, -1)
    clean = grouped[:, 0]
    loss = F.cross_entropy(clean, labels, label_smoothing=label_smoothing)
    return loss + JSD_WEIGHT * jensen_shannon(grouped.softmax(dim=2)), clean
