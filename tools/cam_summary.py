"""Where the shipped (or any) weights look, class by class: statistics of their class-activation maps on test images.

    python tools/cam_summary.py                       # the shipped weights, the 10,000 test images
    python tools/cam_summary.py --weights outputs/default --images 2000

For the images each class's own map explains (the correctly classified ones), the share of the map's mass in the
central 16x16 square, in the top and bottom halves, and the share of the image the map covers (pixels above half
its peak), printed as a Markdown table; then an occlusion check: how much covering the map's hottest 8x8 cell, and
its coldest, costs the predicted class. The README's reading of the maps comes from it.
"""

from __future__ import annotations

import argparse

import torch

from resnet_cifar.data.cifar10 import CLASSES, load_split
from resnet_cifar.data.locate import find_dataset
from resnet_cifar.inference.explain import explain
from resnet_cifar.inference.loading import load_model
from resnet_cifar.inference.tta import predict_logits
from resnet_cifar.runtime import machine_description
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main
from resnet_cifar_lab.summaries import cam_table


def shares(maps: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per map (N x 32 x 32): where its mass lies and how much of the image it covers."""
    total = maps.sum(dim=(1, 2)).clamp_min(1e-12)
    return {
        "centre": maps[:, 8:24, 8:24].sum(dim=(1, 2)) / total,
        "top": maps[:, :16].sum(dim=(1, 2)) / total,
        "bottom": maps[:, 16:].sum(dim=(1, 2)) / total,
        "covered": (maps > 0.5).float().mean(dim=(1, 2)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="run folder or weights file (default: the shipped weights)")
    parser.add_argument(
        "--images", type=int, default=10_000, help="seeded sample of the test set (default: all 10,000)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    ledger.add_flags(parser)
    args = parser.parse_args()
    loaded = load_model(args.weights, device="cpu", precision="fp32")
    dataset = find_dataset(args.data_dir, fallback=loaded.metadata.get("data_folder"))
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    chosen = torch.randperm(len(test.labels), generator=torch.Generator().manual_seed(args.seed))[: args.images]
    images, labels = test.images[chosen], test.labels[chosen]
    explanation = explain(loaded.model, images, top=1, normalization=loaded.normalization, runtime=loaded.runtime)
    right = explanation.classes[:, 0] == labels
    measured = shares(explanation.maps[:, 0])
    print(
        f"{loaded.name} ({loaded.path.name}), {args.images:,} test images (seed {args.seed}), fp32, no TTA, layer "
        f"{explanation.layer}; {machine_description()}"
    )
    per_class = {}
    for index, name in enumerate(CLASSES):
        members = right & (labels == index)
        per_class[name] = {"right": int(members.sum()), **{k: float(v[members].mean()) for k, v in measured.items()}}
    per_class["all"] = {"right": int(right.sum()), **{k: float(v[right].mean()) for k, v in measured.items()}}
    print("\n".join(cam_table(per_class)))
    print("(uniform map: centre 25%, each half 50%)")
    hot, cold = occlusion_costs(loaded, images, explanation)
    occlusion = {
        "hot": float(hot.mean()),
        "cold": float(cold.mean()),
        "hot_costs_more": float((hot > cold).float().mean()),
    }
    print(
        f"occlusion: covering the map's hottest 8x8 cell with the mean colour lowers the predicted class's logit by "
        f"{occlusion['hot']:.2f} on average, its coldest cell by {occlusion['cold']:.2f} "
        f"(hotter costs more on {occlusion['hot_costs_more']:.0%} of the images)"
    )
    if args.record:
        numbers = {"weights": loaded.path.name, "images": args.images, "per_class": per_class, "occlusion": occlusion}
        ledger.append(ledger.record("cam_summary", numbers, precision="fp32", seeds=[args.seed]), args.ledger)
        print(f"recorded in {args.ledger}")
    return 0


def occlusion_costs(loaded, images: torch.Tensor, explanation) -> tuple[torch.Tensor, torch.Tensor]:
    """How much the predicted class's logit drops when the map's hottest / coldest 8x8 cell is covered."""
    cells = torch.nn.functional.avg_pool2d(explanation.maps[:, :1], 8).flatten(1)  # 4 x 4 cells per image
    predicted = explanation.classes[:, :1]

    def logit(batch: torch.Tensor) -> torch.Tensor:
        logits = predict_logits(loaded.model, batch, runtime=loaded.runtime, normalization=loaded.normalization)
        return logits.gather(1, predicted)[:, 0]

    def covered(choice: torch.Tensor) -> torch.Tensor:
        masked = images.clone()
        grey = torch.tensor([125, 123, 114], dtype=torch.uint8).view(3, 1, 1)  # CIFAR-10's mean colour
        for image, cell in zip(masked, choice.tolist(), strict=True):
            row, column = divmod(cell, 4)
            image[:, row * 8 : row * 8 + 8, column * 8 : column * 8 + 8] = grey
        return masked

    base = logit(images)
    return base - logit(covered(cells.argmax(1))), base - logit(covered(cells.argmin(1)))


if __name__ == "__main__":
    raise SystemExit(run_main(main))
