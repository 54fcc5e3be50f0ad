import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fakes import BINARY_NAMES, fake_batch, fake_binary_archive, make_archive, write_fake
from resnet_cifar.data import (
    CIFAR10_MEAN,
    Augmentation,
    balanced_subset,
    cutout,
    find_dataset,
    load_split,
    normalize,
    random_crop,
    random_flip,
    safe_extract,
    train_val_split,
)
from resnet_cifar.data.checksums import FileCheck
from resnet_cifar.data.locate import find_in
from resnet_cifar.errors import DataError, DataNotFoundError

# --- parsing both official formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_parse_fabricated_files(tmp_path, fmt):
    table, contents = write_fake(tmp_path, fmt, n=20)
    train = load_split(tmp_path, "train", checksums=table)
    test = load_split(tmp_path, "test", checksums=table)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.labels.dtype == torch.int64 and len(test.labels) == 20
    first = contents["data_batch_1.bin" if fmt == "binary" else "data_batch_1"][0]
    # Channel planes R, G, B, each row-major 32x32.
    assert torch.equal(train.images[0], torch.from_numpy(first.reshape(3, 32, 32)))
    assert train.labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_corrupted_file_is_named_with_both_checksums(tmp_path, fmt):
    table, _ = write_fake(tmp_path, fmt)
    name = "data_batch_3.bin" if fmt == "binary" else "data_batch_3"
    raw = bytearray((tmp_path / name).read_bytes())
    raw[100] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"{name} is corrupted: expected MD5 {table[name].md5}, got [0-9a-f]{{32}}"):
        load_split(tmp_path, "train", checksums=table)


def test_truncated_and_missing_files_are_named(tmp_path):
    table, _ = write_fake(tmp_path, "binary")
    raw = (tmp_path / "data_batch_2.bin").read_bytes()
    (tmp_path / "data_batch_2.bin").write_bytes(raw[:-10])
    with pytest.raises(DataError, match=rf"data_batch_2.bin is truncated: expected {len(raw):,} bytes, found"):
        load_split(tmp_path, "train", checksums=table)
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(DataError, match="missing file .*test_batch.bin"):
        load_split(tmp_path, "test", checksums=table)


def test_pickle_with_code_is_refused_even_when_its_checksum_matches(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    write_fake(tmp_path, "python")
    raw = pickle.dumps({b"data": Evil(), b"labels": [0]})
    (tmp_path / "data_batch_1").write_bytes(raw)
    table, _ = {}, None
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]:
        data = (tmp_path / name).read_bytes()
        table[name] = FileCheck(hashlib.md5(data).hexdigest())
    with pytest.raises(DataError, match="data_batch_1: not a CIFAR-10 python batch"):
        load_split(tmp_path, "train", checksums=table)
    assert not (tmp_path / "pwned").exists()


def test_real_dataset_counts_order_and_speed(cifar_dir):
    start = time.perf_counter()
    train = load_split(cifar_dir, "train")
    test = load_split(cifar_dir, "test")
    elapsed = time.perf_counter() - start
    assert train.images.shape == (50_000, 3, 32, 32) and test.images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    mean = (train.images.float() / 255).mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor(CIFAR10_MEAN), atol=1e-4)
    assert elapsed < 2.0, f"loading 60,000 images took {elapsed:.2f} s"


def test_one_changed_byte_in_a_real_batch_is_caught(cifar_dir, tmp_path):
    for name in BINARY_NAMES:
        if name != "data_batch_3.bin":
            (tmp_path / name).symlink_to(cifar_dir / name)
    raw = bytearray((cifar_dir / "data_batch_3.bin").read_bytes())
    raw[123_456] ^= 1
    (tmp_path / "data_batch_3.bin").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="data_batch_3.bin is corrupted: expected MD5 942cd6a4bcdd0dd3c604fbe906cb4421"):
        load_split(tmp_path, "train")


# --- locating, archives, download -----------------------------------------------------------------------------------


def test_finds_folder_in_order_flag_env_default(tmp_path, monkeypatch):
    flag, env, default = tmp_path / "flag", tmp_path / "env", tmp_path / "cwd"
    for folder in (flag, env, default / "data"):
        write_fake(folder / "cifar-10-batches-bin", "binary")
    monkeypatch.chdir(default)
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(env))
    assert find_dataset(flag, download=False).folder == flag / "cifar-10-batches-bin"
    assert find_dataset(None, download=False).folder == env / "cifar-10-batches-bin"
    monkeypatch.delenv("RESNET_CIFAR_DATA")
    assert find_dataset(None, download=False).folder == Path("data") / "cifar-10-batches-bin"


def test_no_data_and_no_download_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match=r"Looked in: .*nowhere \(RESNET_CIFAR_DATA\); data \(default\)"):
        find_dataset(None, download=False)


def test_local_archive_is_verified_then_extracted(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    check = fake_binary_archive(archive)
    dataset = find_in(tmp_path, {"cifar-10-binary.tar.gz": check})
    assert dataset.folder == tmp_path / "cifar-10-batches-bin" and dataset.format == "binary"
    assert len(load_split(dataset.folder, "test", checksums={}).labels) == 20
    bad = {"cifar-10-binary.tar.gz": FileCheck("0" * 32)}
    (tmp_path / "other").mkdir()
    fake_binary_archive(tmp_path / "other" / "cifar-10-binary.tar.gz")
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz is corrupted"):
        find_in(tmp_path / "other", bad)


class _Server:
    """A static HTTP server on 127.0.0.1 serving one folder, in a background thread."""

    def __init__(self, folder: Path):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_from_a_local_server(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    check = fake_binary_archive(served / "cifar-10-binary.tar.gz")
    monkeypatch.delenv("RESNET_CIFAR_DATA", raising=False)
    target = tmp_path / "target"
    with _Server(served) as base:
        dataset = find_dataset(target, url=f"{base}/cifar-10-binary.tar.gz", archives={"cifar-10-binary.tar.gz": check})
    assert dataset.folder == target / "cifar-10-batches-bin"
    assert (target / "cifar-10-binary.tar.gz").is_file() and not (target / "cifar-10-binary.tar.gz.part").exists()
    images, _labels = load_split(dataset.folder, "train", checksums={})
    assert images.shape == (100, 3, 32, 32)


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    fake_binary_archive(served / "cifar-10-binary.tar.gz")
    monkeypatch.delenv("RESNET_CIFAR_DATA", raising=False)
    target = tmp_path / "target"
    with _Server(served) as base, pytest.raises(DataNotFoundError, match="has MD5 [0-9a-f]{32}, expected 0{32}"):
        find_dataset(
            target, url=f"{base}/cifar-10-binary.tar.gz", archives={"cifar-10-binary.tar.gz": FileCheck("0" * 32)}
        )
    assert list(target.iterdir()) == []


def test_unreachable_server_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("RESNET_CIFAR_DATA", raising=False)
    with _Server(tmp_path) as base:
        url = f"{base}/missing.tar.gz"  # 404
        with pytest.raises(DataNotFoundError, match="Download failed: could not download .*missing.tar.gz"):
            find_dataset(tmp_path / "target", url=url)


def _tar_with(tmp_path: Path, add) -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        add(tar)
    return path


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("kind", "message"),
    [("absolute", "absolute path"), ("dotdot", "'..'"), ("symlink", "link"), ("hardlink", "link")],
)
def test_safe_extract_refuses_unsafe_members(tmp_path, kind, message):
    def add(tar):
        _file(tar, "good/file.txt")
        if kind == "absolute":
            _file(tar, str(tmp_path / "outside.txt"))
        elif kind == "dotdot":
            _file(tar, "good/../../outside.txt")
        else:
            info = tarfile.TarInfo("good/link")
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)

    archive = _tar_with(tmp_path, add)
    target = tmp_path / "target"
    with pytest.raises(DataError, match=message):
        safe_extract(archive, target)
    assert not (tmp_path / "outside.txt").exists()
    assert not (target / "good").exists()  # nothing is half-extracted


def test_safe_extract_extracts_a_good_archive(tmp_path):
    make_archive(tmp_path / "ok.tar.gz", {"top/a.bin": b"abc", "top/sub/b.bin": b"def"})
    assert safe_extract(tmp_path / "ok.tar.gz", tmp_path / "out") == ["top"]
    assert (tmp_path / "out" / "top" / "sub" / "b.bin").read_bytes() == b"def"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["top"]  # the staging folder is gone


def test_garbage_archive_is_a_data_error(tmp_path):
    (tmp_path / "junk.tar.gz").write_bytes(os.urandom(1000))
    with pytest.raises(DataError, match="junk.tar.gz: not a valid tar archive"):
        safe_extract(tmp_path / "junk.tar.gz", tmp_path / "out")


# --- subsets and splits --------------------------------------------------------------------------------------------


@pytest.fixture
def labels():
    return torch.arange(50_000) % 10


def test_balanced_subset_properties(labels):
    chosen = balanced_subset(labels, 1000, seed=3)
    assert len(chosen) == 1000 and len(set(chosen.tolist())) == 1000
    assert torch.bincount(labels[chosen]).tolist() == [100] * 10
    assert torch.equal(chosen, balanced_subset(labels, 1000, seed=3))
    assert not torch.equal(chosen, balanced_subset(labels, 1000, seed=4))
    assert set(balanced_subset(labels, 500, seed=3).tolist()) <= set(chosen.tolist())  # nested


def test_subset_errors(labels):
    from resnet_cifar.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of 10"):
        balanced_subset(labels, 1005, seed=0)
    with pytest.raises(ConfigError, match="only 5000 are available"):
        balanced_subset(labels, 60_000, seed=0)


def test_validation_split_is_stratified_and_disjoint(labels):
    train, val = train_val_split(labels, 5000, seed=0)
    assert len(val) == 5000 and len(train) == 45_000
    assert torch.bincount(labels[val]).tolist() == [500] * 10
    assert not set(train.tolist()) & set(val.tolist())
    chosen = balanced_subset(labels, 10_000, seed=0, pool=train)
    assert not set(chosen.tolist()) & set(val.tolist())
    assert torch.bincount(labels[chosen]).tolist() == [1000] * 10


# --- augmentation --------------------------------------------------------------------------------------------------


@pytest.fixture
def images():
    return torch.from_numpy(fake_batch(64, seed=0)[0].reshape(64, 3, 32, 32))


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_augmentation_is_deterministic_given_the_generator(images):
    augment = Augmentation(cutout=8)
    a, b = augment(images, _generator(1)), augment(images, _generator(1))
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert not torch.equal(a, augment(images, _generator(2)))


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_random_crop_matches_pad_then_crop(images, mode):
    out = random_crop(images, 4, _generator(5), mode)
    draw = _generator(5)
    dy = torch.randint(-4, 5, (64,), generator=draw)
    dx = torch.randint(-4, 5, (64,), generator=draw)
    padded = F.pad(images.float(), (4, 4, 4, 4), mode="reflect" if mode == "reflect" else "constant")
    for i in range(64):
        y, x = 4 + dy[i], 4 + dx[i]
        assert torch.equal(out[i].float(), padded[i, :, y : y + 32, x : x + 32]), i
    assert len({(int(a), int(b)) for a, b in zip(dy, dx, strict=True)}) > 20  # per-image offsets


def test_flip_and_cutout(images):
    flipped = random_flip(images, _generator(0), p=1.0)
    assert torch.equal(flipped, images.flip(3))
    assert torch.equal(random_flip(images, _generator(0), p=0.0), images)
    holes = cutout(torch.ones(500, 3, 32, 32), 8, _generator(0))
    zeros = (holes[:, 0] == 0).sum(dim=(1, 2))
    assert zeros.max() == 64 and zeros.min() > 0  # full 8x8 squares, some clipped at the border


def test_brightness_and_contrast_jitter_per_image_within_range_and_only_drawn_when_on(images):
    plain = Augmentation(crop_padding=2, flip=True)
    jitter = Augmentation(crop_padding=2, flip=True, brightness=0.2, contrast=0.3)
    params = jitter.sample(64, _generator(3))
    assert torch.equal(params.dy, plain.sample(64, _generator(3)).dy)  # jitter draws come after the others
    assert params.shift_by.abs().max() <= 0.2 and (params.scale_by - 1).abs().max() <= 0.3
    assert len(set(params.shift_by.tolist())) == 64 and len(set(params.scale_by.tolist())) == 64  # per image
    out, base = jitter.apply(images, params), plain.apply(images, params)
    expected = (base + params.shift_by.view(-1, 1, 1, 1)) * params.scale_by.view(-1, 1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(out, jitter(images, _generator(3)))  # deterministic given the generator
    # off: nothing drawn, so a recipe without jitter sees the very stream (and batches) it saw before
    off = plain.sample(64, _generator(3))
    assert torch.equal(off.shift_by, torch.zeros(64)) and torch.equal(off.scale_by, torch.ones(64))
    generator = _generator(3)
    plain.sample(64, generator)
    assert torch.equal(torch.rand(4, generator=generator), _after_plain_draws(64))


def _after_plain_draws(n: int) -> torch.Tensor:
    """The generator's next numbers after the draws a plain crop + flip + cutout augmentation makes by hand."""
    generator = _generator(3)
    for high in (5, 5):
        torch.randint(-2, high - 2, (n,), generator=generator)
    torch.rand(n, generator=generator)
    torch.randint(0, 32, (n,), generator=generator)
    torch.randint(0, 32, (n,), generator=generator)
    return torch.rand(4, generator=generator)


def test_normalize_uses_cifar_statistics():
    mean_image = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1).expand(1, 3, 32, 32) * 255
    assert normalize(mean_image).abs().max() < 1e-5
    raw = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(
        normalize(raw)[0, :, 0, 0], (1 - torch.tensor(CIFAR10_MEAN)) / torch.tensor([0.2470, 0.2435, 0.2616])
    )
    assert np.all(raw.numpy() == 255)  # the input is untouched
