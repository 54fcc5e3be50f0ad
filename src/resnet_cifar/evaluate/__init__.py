"""Accuracy, per-class accuracy, confusion matrix and test-time augmentation."""

from resnet_cifar.evaluate.metrics import accuracy, confusion_matrix, per_class_accuracy, summarize, topk_correct
from resnet_cifar.evaluate.tta import predict_logits, tta_views

__all__ = [
    "accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "predict_logits",
    "summarize",
    "topk_correct",
    "tta_views",
]
