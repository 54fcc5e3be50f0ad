"""Find CIFAR-10 on disk (--data-dir, then RESNET_CIFAR_DATA, then ./data) in either official version or archive, or
download the official binary archive (MD5-checked) and extract it safely; with no network the error says where it
looked and how to provide the data."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from resnet_cifar.data.checksums import ARCHIVES, FileCheck, md5_file, verify_file
from resnet_cifar.data.cifar10 import Split, detect_format, load_split
from resnet_cifar.errors import DataError, DataNotFoundError

ENV_VAR = "RESNET_CIFAR_DATA"
DEFAULT_ROOT = Path("data")
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
URL_ENV_VAR = "RESNET_CIFAR_URL"  # a mirror of the official binary archive (it must still match the MD5)
FOLDERS = {"cifar-10-binary.tar.gz": "cifar-10-batches-bin", "cifar-10-python.tar.gz": "cifar-10-batches-py"}


@dataclass(frozen=True)
class Dataset:
    folder: Path  # the folder holding the batch files
    format: str  # "binary" or "python"


def candidate_roots(data_dir: Path | str | None = None, fallback: Path | str | None = None) -> list[tuple[Path, str]]:
    """Where to look, in order, with the reason each place is on the list.

    A folder named explicitly (--data-dir) is the only place looked: silently reading another copy instead would
    train on data the user did not choose. `fallback` (e.g. the folder a run was trained from) is tried last,
    after ./data.
    """
    if data_dir:
        return [(Path(data_dir), "--data-dir")]
    roots: list[tuple[Path, str]] = []
    if os.environ.get(ENV_VAR):
        roots.append((Path(os.environ[ENV_VAR]), ENV_VAR))
    roots.append((DEFAULT_ROOT, "default"))
    if fallback:
        roots.append((Path(fallback), "where the run found it"))
    return roots


def find_in(root: Path, archives: dict[str, FileCheck] = ARCHIVES) -> Dataset | None:
    """The dataset in `root`: a version folder (root itself or its official sub-folder), or an archive to extract."""
    if root.is_file() and root.name in archives:  # the archive itself was given
        return extract_archive(root, root.parent, archives[root.name])
    for folder in (root, root / "cifar-10-batches-bin", root / "cifar-10-batches-py"):
        fmt = detect_format(folder)
        if fmt:
            return Dataset(folder, fmt)
    for name, check in archives.items():
        if (root / name).is_file():
            return extract_archive(root / name, root, check)
    return None


def find_dataset(
    data_dir: Path | str | None = None, *, download: bool = True, url: str | None = None,
    archives: dict[str, FileCheck] = ARCHIVES, fallback: Path | str | None = None,
) -> Dataset:
    """Locate CIFAR-10, downloading the official binary archive into the first candidate root if needed."""
    roots = candidate_roots(data_dir, fallback)
    if data_dir and Path(data_dir).is_file() and Path(data_dir).name not in archives:
        raise DataError(f"--data-dir {data_dir} is a file, not a CIFAR-10 folder or one of {', '.join(archives)}")
    for root, _why in roots:
        found = find_in(root, archives)
        if found:
            return found
    looked = "; ".join(f"{root} ({why})" for root, why in roots)
    url = url or os.environ.get(URL_ENV_VAR) or OFFICIAL_URL
    how = (
        f"Provide the data: download {OFFICIAL_URL} (or the python version) and either put it (or its extracted "
        f"folder) in ./data, pass --data-dir DIR, or set {ENV_VAR}=DIR."
    )
    if not download:
        raise DataNotFoundError(f"CIFAR-10 not found. Looked in: {looked}. {how}")
    target = roots[0][0]
    try:
        archive = download_file(url, target / "cifar-10-binary.tar.gz", archives["cifar-10-binary.tar.gz"])
    except DataError as error:
        raise DataNotFoundError(f"CIFAR-10 not found. Looked in: {looked}. Download failed: {error}. {how}") from None
    return extract_archive(archive, target, archives["cifar-10-binary.tar.gz"])


def download_file(url: str, destination: Path, check: FileCheck, timeout_s: float = 30.0) -> Path:
    """Stream `url` to `destination` with a progress bar; keep it only if its MD5 matches (atomic rename)."""
    created = not destination.parent.exists()
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {destination.name}") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as error:
        partial.unlink(missing_ok=True)
        if created:  # leave no empty folder behind
            destination.parent.rmdir()
        raise DataError(f"could not download {url}: {getattr(error, 'reason', error)}") from None
    actual = md5_file(partial)
    if actual != check.md5:
        partial.unlink(missing_ok=True)
        raise DataError(f"downloaded {destination.name} from {url} has MD5 {actual}, expected {check.md5}")
    os.replace(partial, destination)
    return destination


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    path = PurePosixPath(member.name)
    if not path.parts:  # "." or "": harmless for the archive's own folder entry, meaningless for anything else
        if member.isdir():
            return
        raise DataError(f"{archive.name}: refusing member with an empty name {member.name!r}")
    if path.is_absolute() or member.name.startswith(("/", "\\")) or ":" in path.parts[0]:
        raise DataError(f"{archive.name}: refusing absolute path {member.name!r}")
    if ".." in path.parts:
        raise DataError(f"{archive.name}: refusing path with '..' {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{archive.name}: refusing link or special file {member.name!r}")


def safe_extract(archive: Path, destination: Path) -> list[str]:
    """Extract a tar archive, refusing absolute paths, '..', links and special files before anything is written.

    Members are extracted into a temporary folder inside `destination` and moved into place at the end, so an
    error (or a crash) never leaves a half-extracted dataset behind. Returns the top-level names extracted.
    """
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            with tempfile.TemporaryDirectory(dir=destination, prefix=".extract-") as staging:
                # The "data" filter (Python >= 3.10.12 / 3.11.4) is a second line of defence behind the checks above.
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(staging, members=members, **extra)
                tops = sorted({PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts})
                for top in tops:
                    target = destination / top
                    if target.exists():
                        shutil.rmtree(target) if target.is_dir() else target.unlink()
                    os.replace(Path(staging) / top, target)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{archive.name}: not a valid tar archive ({error})") from None
    return tops


def extract_archive(archive: Path, destination: Path, check: FileCheck) -> Dataset:
    """Verify an official archive's MD5, extract it safely, and return the dataset folder inside."""
    verify_file(archive, check)
    safe_extract(archive, destination)
    folder = destination / FOLDERS.get(archive.name, "cifar-10-batches-bin")
    fmt = detect_format(folder)
    if fmt is None:
        raise DataError(f"{archive.name}: extracted, but {folder} holds no CIFAR-10 batches")
    return Dataset(folder, fmt)


def load_cifar10(data_dir: Path | str | None = None, split: str = "train", *, download: bool = True) -> Split:
    """The whole CIFAR-10 split as (images N x 3 x 32 x 32 uint8, labels N int64), checksums verified. `data_dir` holds
    either version or its archive (None: RESNET_CIFAR_DATA, then ./data); missing data is downloaded if `download`."""
    dataset = find_dataset(data_dir, download=download)
    return load_split(dataset.folder, split, fmt=dataset.format)


def load_test_sample(data_dir: str | Path | None, count: int, seed: int = 0) -> Split:
    """The test split of the dataset found for `data_dir`: all of it, or a class-balanced sample of `count` images
    (drawn with `seed`) when that is fewer. What the experiments evaluate their nets on."""
    from resnet_cifar.data.splits import balanced_subset

    dataset = find_dataset(data_dir)
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    if count >= len(test.labels):
        return test
    keep = balanced_subset(test.labels, count, seed)
    return Split(test.images[keep], test.labels[keep])
