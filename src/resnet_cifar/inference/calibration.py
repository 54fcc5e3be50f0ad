"""Probabilities that mean what they say: expected calibration error, NLL, and temperature scaling (Guo et al. 2017):
the logits divided by one number fitted on the validation split, which changes no prediction, only how sure each is."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ECE_BINS = 15  # the usual number of equal-width confidence bins (Guo et al.)
LOG_T_RANGE = (-3.0, 3.0)  # T from 0.05 to 20: far wider than any trained net needs


NO_TEMPERATURE = 1.0  # weights fitted without a validation split: the logits as they are


def temperature_of(calibration: dict | None) -> float:
    """The temperature a calibration record holds (`temperature_calibration`'s output, a checkpoint's or a model
    card's `calibration`), 1.0 where there is none: probabilities are softmax(logits / temperature)."""
    return float((calibration or {}).get("temperature", NO_TEMPERATURE))


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Σ over equal-width confidence bins of |accuracy − mean confidence| × the bin's share of the examples."""
    probabilities = logits.float().softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype)
    index = torch.bucketize(confidence, edges[1:-1], right=True)  # bin i holds (edges[i], edges[i+1]]
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.double().mean().item() * abs(
                correct[members].mean().item() - confidence[members].double().mean().item()
            )
    return error


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return F.cross_entropy(logits.float(), labels).item()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, iterations: int = 60) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on (logits, labels): golden-section search over log T
    (the NLL is unimodal in it), deterministic, with no optimizer state."""
    logits = logits.float()

    def nll(log_t: float) -> float:
        return F.cross_entropy(logits / math.exp(log_t), labels).item()

    low, high = LOG_T_RANGE
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(iterations):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return math.exp((low + high) / 2)


def calibration_report(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict:
    """ECE, NLL and mean top-1 confidence of `logits` as they are and divided by `temperature`."""
    scaled = logits.float() / temperature
    return {
        "temperature": temperature, "ece_before": expected_calibration_error(logits, labels),
        "ece_after": expected_calibration_error(scaled, labels), "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": negative_log_likelihood(scaled, labels),
        "confidence_before": logits.float().softmax(1).max(1).values.mean().item(),
        "confidence_after": scaled.softmax(1).max(1).values.mean().item(),
    }


def temperature_calibration(logits: torch.Tensor, labels: torch.Tensor, tta: int) -> dict:
    """A run's calibration record: the temperature fitted on validation logits (at TTA level `tta`), their accuracy at
    that level, and the validation split's report before and after it."""
    temperature = fit_temperature(logits, labels)
    return {
        "temperature": temperature,
        "fitted_on": "validation",
        "tta": tta,
        "val_acc": (logits.argmax(1) == labels).double().mean().item(),  # at that TTA level
        "validation": calibration_report(logits, labels, temperature),
    }
