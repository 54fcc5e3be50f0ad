"""Experiments that measure why residual connections work: gradient flow and the degradation of deep plain nets."""
