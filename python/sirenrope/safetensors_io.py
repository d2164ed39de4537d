"""A strict, dependency-free reader and a deterministic writer for the safetensors format.

Layout: 8-byte little-endian header length N, N bytes of JSON header, then the data region.
The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
relative to the data region) and may hold ``__metadata__``, a string-to-string map.

The writer sorts tensors by name, packs them back to back, pads the header with spaces to
a multiple of 8 and emits canonical JSON, so equal inputs give byte-identical files. The
reader checks every offset and size against the file before touching data, and raises
`SafetensorsError` naming the tensor or header field at fault.
"""

from __future__ import annotations

import json
import struct
from typing import Mapping

import numpy as np

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),
}
# bfloat16 has no numpy dtype: it is read and written as raw uint16 words.
BF16 = "BF16"
_NAME_OF = {v: k for k, v in DTYPES.items()}

MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The bytes are not a well-formed safetensors file."""


def encode(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None,
           bf16: set[str] | None = None) -> bytes:
    """Serialise arrays; names in ``bf16`` must be uint16 arrays of bfloat16 bit patterns."""
    bf16 = bf16 or set()
    header: dict[str, object] = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError("__metadata__ must map strings to strings")
        header["__metadata__"] = dict(metadata)
    chunks = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise SafetensorsError("'__metadata__' is reserved and cannot name a tensor")
        arr = np.asarray(tensors[name])  # not ascontiguousarray: it turns 0-d into 1-d
        if name in bf16:
            if arr.dtype != np.uint16:
                raise SafetensorsError(f"tensor '{name}': bf16 data must be passed as uint16 bits")
            dtype_name, data = BF16, arr.astype("<u2").tobytes()
        else:
            dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
            if dt not in _NAME_OF:
                raise SafetensorsError(f"tensor '{name}': unsupported dtype {arr.dtype}")
            dtype_name, data = _NAME_OF[dt], arr.astype(dt.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype_name, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def decode(buf: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse and bounds-check a whole file; returns (tensors, metadata).

    BF16 tensors come back as uint16 arrays of bit patterns (see `bf16_to_f32`).
    """
    if len(buf) < 8:
        raise SafetensorsError(f"truncated: file is {len(buf)} bytes, the header length needs 8")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > len(buf):
        raise SafetensorsError(f"truncated: header claims {n} bytes but only {len(buf) - 8} follow")
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"header is not valid UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header must be a JSON object")
    data = memoryview(buf)[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError("__metadata__ must map strings to strings")
    spans = []
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        where = f"tensor '{name}'"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{where}: entry needs exactly dtype, shape, data_offsets")
        dtype_name, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dtype_name != BF16 and dtype_name not in DTYPES:
            raise SafetensorsError(f"{where}: unsupported dtype {dtype_name!r}")
        if not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise SafetensorsError(f"{where}: shape must be a list of non-negative integers")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(
                isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise SafetensorsError(f"{where}: data_offsets must be two integers")
        begin, end = offs
        itemsize = 2 if dtype_name == BF16 else DTYPES[dtype_name].itemsize
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not 0 <= begin <= end:
            raise SafetensorsError(f"{where}: data_offsets [{begin}, {end}] are not ordered")
        if end > len(data):
            raise SafetensorsError(
                f"truncated: {where} ends at byte {end} of a {len(data)}-byte data region")
        if end - begin != numel * itemsize:
            raise SafetensorsError(f"{where}: {end - begin} bytes for shape {shape} of "
                                   f"{dtype_name} ({numel * itemsize} expected)")
        spans.append((begin, end, name))
        dt = np.dtype("<u2") if dtype_name == BF16 else DTYPES[dtype_name]
        tensors[name] = np.frombuffer(data[begin:end], dtype=dt).reshape(shape).copy()
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise SafetensorsError(
                f"tensor '{name}': data starts at {begin}, expected {pos} (gap or overlap)")
        pos = end
    if pos != len(data):
        raise SafetensorsError(f"data region has {len(data) - pos} trailing bytes past the last tensor")
    return tensors, metadata


def dtype_name(arr: np.ndarray) -> str:
    """The safetensors name of a decoded array's dtype (uint16 arrays are BF16 bits)."""
    if arr.dtype == np.dtype("<u2"):
        return BF16
    return _NAME_OF.get(arr.dtype, str(arr.dtype))


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round to nearest even); returns uint16 bit patterns."""
    bits = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(x)
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype("<u4") << 16).view("<f4")
