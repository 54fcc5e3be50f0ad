"""Classification metrics from logits and labels (pure tensor functions, checked against hand-computed values)."""

from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Per example: 1 if the label is among the k highest logits, else 0."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels.view(-1, 1)).any(dim=1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    if len(labels) == 0:
        return float("nan")
    return topk_correct(logits, labels, k).float().mean().item()


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[true, predicted]."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class: correct / examples of that class (NaN for classes with no examples)."""
    totals = confusion.sum(dim=1).double()
    return confusion.diagonal().double() / totals


def summarize(logits: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...] | list[str]) -> dict:
    """Top-1, top-5, mean loss, per-class accuracy and the confusion matrix as plain Python values."""
    num_classes = logits.shape[1]
    confusion = confusion_matrix(logits.argmax(1), labels, num_classes)
    per_class = per_class_accuracy(confusion)
    return {
        "images": len(labels), "top1": accuracy(logits, labels, 1), "top5": accuracy(logits, labels, 5),
        "loss": torch.nn.functional.cross_entropy(logits.float(), labels).item(),
        "per_class": {name: round(float(acc), 6) for name, acc in zip(class_names, per_class, strict=True)},
        "confusion_matrix": confusion.tolist(),
    }
