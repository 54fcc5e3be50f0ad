"""Checkpoints as one safetensors file: the tensors (model, EMA, optimizer buffers, RNG state) and JSON metadata in its
header, with a SHA-256 of every tensor and of the metadata itself, so neither can be altered unnoticed. Nothing is
ever unpickled; writes are atomic (files.atomic_write_bytes); a readable copy of the metadata sits beside it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from resnet_cifar.errors import CheckpointError
from resnet_cifar.files import atomic_write_bytes

FORMAT = "resnet-cifar-checkpoint/1"
METADATA_KEY = "resnet_cifar"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes of all tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def metadata_digest(metadata: dict[str, Any]) -> str:
    """SHA-256 of the metadata's canonical JSON (sorted keys), its own digest left out."""
    body = {key: value for key, value in metadata.items() if key != "metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# Keys a checkpoint's writer adds to the metadata it is given (a copy of the metadata to re-save drops them).
WRITTEN_KEYS = ("format", "tensor_sha256", "metadata_sha256")


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Atomically write tensors + metadata to `path` (.safetensors) and a JSON copy of the metadata beside it."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    metadata = {**metadata, "format": FORMAT, "tensor_sha256": tensor_digest(tensors)}
    metadata["metadata_sha256"] = metadata_digest(metadata)
    text = json.dumps(metadata, sort_keys=True)
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata={METADATA_KEY: text}))
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode())


def load_checkpoint(path: Path | str, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of a checkpoint; CheckpointError naming the file if it is missing, torn or altered."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = safetensors.torch.load_file(str(path))
    except Exception as error:  # safetensors raises several types for torn or garbled files
        kind = other_file_kind(path)
        if kind is not None:
            raise CheckpointError(
                f"{path} is {kind}, not weights: expected a .safetensors file{_sibling(path)}"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint (truncated or corrupted): {error}"
        ) from None
    if METADATA_KEY not in header:
        return tensors, {}  # plain weights (e.g. exported elsewhere): no metadata, nothing to verify
    try:
        metadata = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: unknown checkpoint format {metadata.get('format') if isinstance(metadata, dict) else None!r}"
        )
    if verify:
        if tensor_digest(tensors) != metadata.get("tensor_sha256"):
            raise CheckpointError(f"{path}: checksum mismatch, the checkpoint's tensors were altered or damaged")
        if "metadata_sha256" not in metadata:
            raise CheckpointError(f"{path}: its metadata carries no checksum, so it cannot be trusted; refused")
        if metadata_digest(metadata) != metadata["metadata_sha256"]:
            raise CheckpointError(
                f"{path}: checksum mismatch, the checkpoint's metadata (config, calibration, normalisation) was altered"
            )
    return tensors, metadata


def other_file_kind(path: Path) -> str | None:
    """What a file that is not safetensors is, from its first bytes and name, in words; None if unrecognised."""
    with open(path, "rb") as handle:
        start = handle.read(16)
    if path.suffix == ".json" or start.lstrip()[:1] in (b"{", b"["):
        return "a JSON file (a checkpoint's readable metadata?)"
    if start.startswith(b"PK\x03\x04"):
        return "a zip archive (a TorchScript or torch.save file?)"
    if start[:1] == b"\x80" or path.suffix in (".pt", ".pth", ".ckpt", ".pkl"):
        return "a pickle (torch.save) file, which is never unpickled here"
    if path.suffix == ".onnx":
        return "an ONNX model (run it with ONNX Runtime; it cannot be loaded back as weights)"
    if start.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF")):
        return "an image"
    return None


def _sibling(path: Path) -> str:
    """`; NAME.safetensors beside it is one` when the safetensors file of the same name exists."""
    candidate = path.with_suffix(".safetensors")
    return f"; {candidate} beside it is one" if candidate != path and candidate.is_file() else ""


def recorded_precision(metadata: dict[str, Any]) -> str | None:
    """The precision (bf16 or fp32) a checkpoint's weights were trained and tested in, as its runtime records it
    (stored there once); None where the file records none (weights from elsewhere, shipped weights)."""
    return metadata.get("runtime", {}).get("precision")


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix.`, with the prefix removed."""
    start = len(prefix) + 1
    return {name[start:]: t for name, t in tensors.items() if name.startswith(prefix + ".")}


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the wrappers' prefixes (DDP's `module.`, torch.compile's `_orig_mod.`) from parameter names."""
    cleaned = {}
    for name, tensor in state.items():
        for prefix in ("module.", "_orig_mod."):
            while name.startswith(prefix):
                name = name[len(prefix) :]
        cleaned[name.replace("._orig_mod.", ".")] = tensor
    return cleaned
