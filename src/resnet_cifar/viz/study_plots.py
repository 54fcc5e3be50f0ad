"""Plots of the experiments: gradient flow per layer, and the degradation curves in the style of He et al. Fig. 6."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from resnet_cifar.viz.pictures import save_png

DEPTH_COLORS = {20: "#1f77b4", 32: "#2ca02c", 44: "#ff7f0e", 56: "#d62728", 110: "#9467bd"}


def _depth(label: str) -> int:
    digits = "".join(ch for ch in label.split("-")[0] if ch.isdigit())
    return int(digits)


def plot_gradient_flow(results: dict, path: Path) -> Path:
    """Rows: conv-weight gradient norms, activation gradient norms. Columns: (with/without BN) x (init/trained).
    Solid lines residual, dashed plain; colour = depth; log scale; x = position from input (0) to output (1)."""
    nets = results["nets"]
    norms = sorted({net["norm"] for net in nets.values()}, key=lambda n: n != "bn")
    columns = [(norm, stage) for norm in norms for stage in ("init", "trained")]
    fig = Figure(figsize=(4.2 * len(columns), 8), dpi=100)
    axes = fig.subplots(2, len(columns), squeeze=False)
    steps = results["settings"]["steps"]
    for col, (norm, stage) in enumerate(columns):
        for label, net in nets.items():
            if net["norm"] != norm:
                continue
            data = net[stage]
            style = "-" if net["model"].startswith("resnet") else "--"
            color = DEPTH_COLORS.get(_depth(label), "black")
            for row, key in enumerate(("conv_grad_norms", "activation_grad_norms")):
                values = data[key]
                xs = [i / max(len(values) - 1, 1) for i in range(len(values))]
                axes[row][col].plot(xs, values, style, color=color, lw=1.3, label=label.replace("-nobn", ""))
        when = "at init" if stage == "init" else f"after {steps} steps"
        title = f"{'with' if norm == 'bn' else 'without'} batch norm, {when}"
        axes[0][col].set_title(title, fontsize=10)
        for row in range(2):
            axes[row][col].set_yscale("log")
            axes[row][col].grid(alpha=0.3, which="both")
            axes[row][col].set_xlabel("relative depth (0 = input, 1 = output)")
        axes[0][col].legend(fontsize=7, ncol=2)
    axes[0][0].set_ylabel("||dL/dW|| per conv layer")
    axes[1][0].set_ylabel("||dL/da|| per block output")
    fig.suptitle("Gradient flow on a fixed batch: residual (solid) vs plain (dashed)")
    fig.tight_layout()
    return save_png(fig, path, fast=False)


def plot_degradation(results: dict, path: Path) -> Path:
    """He et al. Fig. 6 layout: plain nets left, residual nets right; thin lines training error, bold test error,
    against epochs (the short-budget degradation study). One run per net (the first seed of each)."""
    return _plain_beside_residual(results, path, "Degradation: the same recipe and budget for every net")


def plot_figure6(results: dict, path: Path) -> Path:
    """He et al. Fig. 6 as the depth study trains it: against iterations, the error axis cut as the paper's is (to
    twice the worst final error, at least 20%), so the final epochs, where depth shows, are not squeezed flat by the
    first ones."""
    finals = [
        100 * net[key][-1]
        for net in results["nets"].values()
        for key in ("train_error_per_epoch", "test_error_per_epoch")
    ]
    top = max(20, 5 * math.ceil(2 * max(finals, default=10) / 5))
    return _plain_beside_residual(
        results, path, "He et al. Fig. 6 on CIFAR-10: every net the same recipe and budget", ylim=(0, top)
    )


def _plain_beside_residual(results: dict, path: Path, title: str, ylim: tuple[float, float] | None = None) -> Path:
    fig = Figure(figsize=(12, 4.8), dpi=100)
    axes = fig.subplots(1, 2, sharey=True)
    shown: set[str] = set()
    for ax, kind in zip(axes, ("plain", "resnet"), strict=True):
        for name, net in results["nets"].items():
            model = net.get("net", name)
            if not model.startswith(kind) or model in shown:
                continue
            shown.add(model)
            color = DEPTH_COLORS.get(_depth(model), "black")
            scale = net.get("steps_per_epoch", 1)
            xs = [scale * epoch for epoch in range(1, len(net["test_error_per_epoch"]) + 1)]
            ax.plot(xs, [100 * e for e in net["train_error_per_epoch"]], color=color, lw=1, ls="--")
            seed = f", seed {net['seed']}" if "seed" in net else ""
            label = f"{kind}-{_depth(model)}{seed}"
            ax.plot(xs, [100 * e for e in net["test_error_per_epoch"]], color=color, lw=2.6, label=label)
        ax.set_title("plain networks" if kind == "plain" else "residual networks (ResNet)")
        ax.set_xlabel("iterations" if any("steps_per_epoch" in net for net in results["nets"].values()) else "epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if ylim is not None:
        axes[0].set_ylim(*ylim)
    axes[0].set_ylabel("error (%)   thin dashed: training, bold: test")
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path, fast=False)


def plot_data_efficiency(results: dict, path: Path) -> Path:
    return save_png(data_efficiency_figure(results), path, fast=False)


def data_efficiency_figure(results: dict) -> Figure:
    """Test accuracy against training-set size (log x), mean ± std over seeds, residual vs plain twin."""
    fig = Figure(figsize=(7.5, 4.8), dpi=100)
    ax = fig.subplots()
    styles = {"residual": ("#1f77b4", "o-", "residual"), "plain": ("#d62728", "s--", "plain twin (no shortcuts)")}
    sizes: set[int] = set()
    for kind, rows in results["summary"].items():
        color, fmt, label = styles[kind]
        xs = [row["train_size"] for row in rows]
        sizes.update(xs)
        ax.errorbar(
            xs, [100 * row["mean"] for row in rows], yerr=[100 * row["std"] for row in rows], fmt=fmt, color=color,
            capsize=4, lw=1.8, label=f"{label}, {rows[0]['n'] if rows else 0} seeds",
        )
    ax.set_xscale("log")
    ax.set_xticks(sorted(sizes), [f"{n:,}" for n in sorted(sizes)])
    ax.minorticks_off()
    ax.set_xlabel("class-balanced training images (log scale)")
    ax.set_ylabel("test accuracy (%)  mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"Accuracy vs training-set size: {results['budget']}", fontsize=10)
    fig.tight_layout()
    return fig
