"""Pictures: the inference grid, training curves, confusion matrix, and the experiments' plots.

Figures are built with matplotlib's object API (`Figure`, no pyplot), so no display or backend is ever needed.
"""
