"""AugMix on whole batches: the operations against Pillow's, determinism, DDP slicing, the JSD loss, exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from resnet_cifar.checkpoint import load_checkpoint
from resnet_cifar.data.augment import Augmentation
from resnet_cifar.data.augmix import OPS, apply_operations, augmix, sample_augmix
from resnet_cifar.errors import Interrupted
from resnet_cifar.train.losses import jensen_shannon, training_loss
from tiny import StopAt, make_trainer, tiny_config


def random_images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def run_op(name: str, images: torch.Tensor, level: float, sign: float = 1.0) -> torch.Tensor:
    n = len(images)
    op = torch.full((n,), OPS.index(name))
    out = apply_operations(
        images.float(), op, torch.full((n,), level), torch.full((n,), sign), torch.ones(n, dtype=torch.bool)
    )
    return out


def test_pixel_operations_match_pillow():
    # a smooth image with a narrow range, so autocontrast and equalize have work to do
    base = torch.linspace(60, 140, 32 * 32).view(1, 1, 32, 32).repeat(2, 3, 1, 1)
    base[1] = base[1].flip(-1) * 0.7 + 20
    images = (base + random_images(2)[:, :, :, :] % 7).round().clamp(0, 255).to(torch.uint8)
    for index, image in enumerate(images):
        expected = {
            "autocontrast": ImageOps.autocontrast(pil(image)),
            "equalize": ImageOps.equalize(pil(image)),
            "posterize": ImageOps.posterize(pil(image), 4 - int(2.5 * 4 / 10)),
            "solarize": ImageOps.solarize(pil(image), 256 - int(2.5 * 256 / 10)),
        }
        for name, want in expected.items():
            got = run_op(name, images[index : index + 1], level=2.5)[0]
            difference = (got - tensor(want).float()).abs().max()
            assert difference <= 1, (name, float(difference))


def test_geometric_operations_move_the_image_and_keep_the_range():
    images = random_images(4)
    for name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
        moved = run_op(name, images, level=3.0)
        assert moved.shape == images.shape and moved.min() >= 0 and moved.max() <= 255
        assert (moved - images.float()).abs().mean() > 5, name
    shifted = run_op("translate_x", images, level=3.0)  # 3 * 32 / 3 / 10 -> 3 pixels; as PIL's AFFINE, output x
    assert torch.allclose(shifted[..., :-3], images.float()[..., 3:], atol=1e-3)  # reads input x + 3
    assert shifted[..., -3:].abs().max() == 0  # filled black


def test_same_draws_same_images_and_views_differ():
    images = random_images().float()
    draws = sample_augmix(len(images), 2, 3, torch.Generator().manual_seed(5))
    again = sample_augmix(len(images), 2, 3, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(draws, again, strict=True))
    first, second = augmix(images, draws, 0), augmix(images, draws, 1)
    assert torch.equal(first, augmix(images, again, 0))
    assert not torch.equal(first, second) and not torch.equal(first, images)
    assert first.min() >= 0 and first.max() <= 255
    weights = draws[4]
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]))


@pytest.mark.parametrize("mode", ["mix", "jsd"])
def test_the_batch_augmentation_and_its_ddp_slices(mode):
    images = random_images(8)
    augmentation = Augmentation(crop_padding=2, augmix=mode)
    params = augmentation.sample(8, torch.Generator().manual_seed(1))
    whole = augmentation.apply(images, params)
    assert whole.shape == (8 * augmentation.views, 3, 32, 32)
    halves = torch.cat([augmentation.apply(images[s], params[s]) for s in (slice(0, 4), slice(4, 8))])
    assert torch.equal(whole, halves)  # each rank augments its slice exactly as one process does the whole
    plain = Augmentation(crop_padding=2).apply(images, params)
    if mode == "jsd":  # image-major: clean, mix, mix
        assert torch.equal(whole[0::3], plain) and not torch.equal(whole[1::3], plain)
    else:
        assert not torch.equal(whole, plain)


def test_jensen_shannon_and_the_training_loss():
    same = torch.softmax(torch.randn(4, 1, 10), -1).expand(4, 3, 10)
    assert float(jensen_shannon(same)) == pytest.approx(0.0, abs=1e-6)
    assert float(jensen_shannon(torch.softmax(torch.randn(4, 3, 10), -1))) > 0.01
    logits, labels = torch.randn(12, 10), torch.arange(4)
    loss, clean = training_loss(logits, labels, 0.0, views=3)
    assert torch.equal(clean, logits.view(4, 3, 10)[:, 0])
    expected = torch.nn.functional.cross_entropy(clean, labels) + 12 * jensen_shannon(logits.view(4, 3, 10).softmax(-1))
    assert float(loss) == pytest.approx(float(expected))
    plain, same_logits = training_loss(logits[:4], labels, 0.1)
    assert torch.equal(same_logits, logits[:4])
    assert float(plain) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits[:4], labels, label_smoothing=0.1))
    )


def test_augmix_jsd_trains_and_resumes_exactly(cifar_dir, tmp_path):
    config = tiny_config(data_dir=str(cifar_dir), augmix="jsd", epochs=2, train_size=300, val_size=100, accumulate=2)
    straight = make_trainer(config, tmp_path / "straight")
    straight.fit()
    assert all(math.isfinite(row["train_loss"]) for row in straight.history)
    with pytest.raises(Interrupted):
        make_trainer(config, tmp_path / "resumed", callbacks=[StopAt(4)]).fit()  # mid-epoch 2 of 3 steps each
    resumed = make_trainer(config, tmp_path / "resumed")
    resumed.load(tmp_path / "resumed" / "last.safetensors")
    resumed.fit()
    a, _ = load_checkpoint(tmp_path / "straight" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "resumed" / "last.safetensors")
    model = [k for k in a if k.startswith("model.")]
    assert model and all(torch.equal(a[k], b[k]) for k in model)
