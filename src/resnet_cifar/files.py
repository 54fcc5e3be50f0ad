"""Files a user owns are never lost: every write is whole or not at all (a temporary file in the same folder,
flushed, fsynced, then renamed over the old one), never replaces anything that is not a regular file (a FIFO, a
device such as /dev/null, a folder), and a file the user names as an output is checked by one rule
(`check_output`). Files read as configuration are read only when they are regular and small (`read_text_bounded`).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from resnet_cifar.errors import OutputError


def special_kind(path: Path) -> str | None:
    """What `path` is when it exists and is not a regular file ("a named pipe (FIFO)", "a folder", ...), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "a device")


def check_output(path: Path | str, force: bool = False, inputs: Iterable[Path | str] = ()) -> Path:
    """`path` if a command may write it: never one of its `inputs`, never anything but a regular file (even with
    `force`), an existing file only with `force`. OutputError otherwise, naming what is there."""
    path = Path(path)
    kind = special_kind(path)
    if kind is not None:
        raise OutputError(f"{path} is {kind}, not a file this command may write; name a file")
    if any(path.exists() and Path(given).exists() and path.samefile(given) for given in inputs):
        raise OutputError(f"{path} is one of this command's inputs; name another file to write")
    if path.exists() and not force:
        raise OutputError(f"{path} exists; pass --force to replace it")
    return path


def read_text_bounded(path: Path | str, limit: int, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes, read no further than that (a FIFO would block and
    /dev/zero never end); ValueError saying why not, OSError and UnicodeDecodeError as reading raises them."""
    path = Path(path)
    kind = special_kind(path)
    if kind is not None:
        raise ValueError(f"{path} is {kind}, not a {what}")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit // 1024} KiB: not a {what}")
    return data.decode("utf-8")


def fsync_directory(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old content or the new, never a mix; OutputError when `path`
    is something other than a regular file (a rename would replace a device or a FIFO with a file)."""
    path = Path(path)
    kind = special_kind(path)
    if kind is not None:
        raise OutputError(f"{path} is {kind}; nothing is written over it")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; give the permissions open() would
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
