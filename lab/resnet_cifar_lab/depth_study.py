"""The depth study (`resnet-cifar experiment depth`) as the ledger holds it: He et al.'s Table 6 beside the errors
measured here, and the paper's two claims with their verdicts.

Each finished net is a ledger record of its own (`NET_RECORD`, with the configuration it trained with), so a study
spread over several machines, or read in a fresh clone, still has every net that finished anywhere.
"""

from __future__ import annotations

import itertools
import json
import statistics

from resnet_cifar.experiments.depth import net_fingerprint, run_name, study_runs
from resnet_cifar.experiments.settings import DepthSettings
from resnet_cifar.models.registry import model_spec

# Test error (%) of He et al. 2015 Table 6 (164 epochs; for ResNet-110 the best of 5 runs, whose mean ± std is in
# PAPER_110_MEAN), akamaster/pytorch_resnet_cifar10 (200 epochs) and chenyaofo/pytorch-cifar-models (torch.hub
# weights), as each publishes it.
ANCHORS = {
    "He et al. 2015": {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43},
    "akamaster": {20: 8.27, 32: 7.37, 44: 6.90, 56: 6.61, 110: 6.32},
    "chenyaofo": {20: 7.40, 32: 6.47, 44: 5.99, 56: 5.63},
}
PAPER_110_MEAN = (6.61, 0.16)  # He et al. 2015, Table 6: ResNet-110 over 5 runs, "6.61±0.16"
NET_RECORD = "experiment depth net"  # the ledger's record of one finished net


def depth_of(net: str) -> int:
    return model_spec(net).depth


def recorded_nets(ledger_entries: list[dict]) -> dict[str, list[dict]]:
    """The finished nets the ledger holds, by run name: each `{"config": ..., "result": ...}`, oldest first."""
    nets: dict[str, list[dict]] = {}
    for entry in ledger_entries:
        if entry.get("benchmark") == NET_RECORD:
            result = entry["numbers"]["result"]
            nets.setdefault(run_name(result["net"], result["seed"]), []).append(entry["numbers"])
    return nets


def from_ledger(settings: DepthSettings, ledger_entries: list[dict]) -> dict:
    """The study as the ledger holds it: the nets finished anywhere with this very configuration."""
    recorded = recorded_nets(ledger_entries)
    finished = {}
    for net, seed in study_runs(settings):
        fingerprint = json.loads(json.dumps(net_fingerprint(settings, net, seed)))
        matching = [entry for entry in recorded.get(run_name(net, seed), []) if entry["config"] == fingerprint]
        finished[run_name(net, seed)] = matching[-1]["result"] if matching else None
    nets = {name: result for name, result in finished.items() if result is not None}
    return {"nets": nets, "missing": [name for name in finished if name not in nets]}


def trained_on(net: dict) -> list[str]:
    """Where a net trained: the machines of its hours, or the one machine it finished on."""
    return sorted(net.get("hours_by_machine") or ([net["machine"]] if net.get("machine") else []))


def table6(results: dict, kind: str = "resnet") -> list[dict]:
    """One row per depth of `kind` (resnet or plain): test error (single view and flip TTA) and the final epoch's
    training error (on its augmented batches), each mean and std over the seeds run."""
    by_depth: dict[int, list[dict]] = {}
    for result in results["nets"].values():
        if result["net"].startswith(kind):
            by_depth.setdefault(depth_of(result["net"]), []).append(result)
    return [_row(depth, nets, kind) for depth, nets in sorted(by_depth.items())]


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def _row(depth: int, nets: list[dict], kind: str = "resnet") -> dict:
    test, test_std = _mean_std([100 * net["test_error"] for net in nets])
    tta, tta_std = _mean_std([100 * net["test_error_tta"] for net in nets])
    train, train_std = _mean_std([100 * net["train_error_per_epoch"][-1] for net in nets])
    return {
        "net": f"{kind}{depth}",
        "seeds": sorted(net["seed"] for net in nets),
        "test_error": test,
        "test_error_std": test_std,
        "test_error_tta": tta,
        "test_error_tta_std": tta_std,
        "train_error": train,
        "train_error_std": train_std,
        "epochs": nets[0]["epochs"],
        "cpu_hours": statistics.mean(net["train_seconds"] for net in nets) / 3600,
        **{source: errors.get(depth) if kind == "resnet" else None for source, errors in ANCHORS.items()},
        "trained_on": sorted({machine for net in nets for machine in trained_on(net)}),
    }


def thesis(results: dict) -> dict:
    """The paper's two claims, measured: the ResNets' test error (single view, mean over seeds) falls with every step
    of depth, and the plain nets' final training error rises with it. A verdict is None until two depths of its kind
    have finished."""

    def by_depth(kind: str, error) -> dict[int, float]:
        errors: dict[int, list[float]] = {}
        for net in results["nets"].values():
            if net["net"].startswith(kind):
                errors.setdefault(depth_of(net["net"]), []).append(100 * error(net))
        return {depth: statistics.mean(values) for depth, values in sorted(errors.items())}

    def verdict(errors: dict[int, float], sign: int) -> bool | None:
        values = list(errors.values())
        return None if len(values) < 2 else all(sign * (b - a) > 0 for a, b in itertools.pairwise(values))

    resnet = by_depth("resnet", lambda net: net["test_error"])
    plain = by_depth("plain", lambda net: net["train_error_per_epoch"][-1])
    return {
        "resnet_test_error": resnet,
        "resnet_test_error_falls_with_depth": verdict(resnet, -1),
        "plain_train_error": plain,
        "plain_train_error_rises_with_depth": verdict(plain, +1),
    }


# the paper's two claims: what each says, and the keys of `thesis()` holding its errors and its verdict
CLAIMS = (
    ("ResNets' test error falls with depth", "resnet_test_error", "resnet_test_error_falls_with_depth"),
    ("plain nets' training error rises with depth", "plain_train_error", "plain_train_error_rises_with_depth"),
)
