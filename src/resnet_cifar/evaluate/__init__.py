"""Accuracy, per-class accuracy, confusion matrix (and, for convenience, the batched TTA inference they score)."""

from resnet_cifar.evaluate.metrics import accuracy, confusion_matrix, per_class_accuracy, summarize, topk_correct
from resnet_cifar.inference.tta import predict_logits, tta_views

__all__ = [
    "accuracy", "confusion_matrix", "per_class_accuracy", "predict_logits", "summarize", "topk_correct", "tta_views",
]
