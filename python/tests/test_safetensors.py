from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from sirenrope.safetensors_io import (SafetensorsError, bf16_to_f32, decode, encode, f32_to_bf16)


def _raw(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_round_trip_of_every_dtype_with_metadata():
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
               "b": np.array([1.5, -2.25], dtype=np.float64),
               "c": np.array([[1, -2]], dtype=np.int64), "d": np.array(3.0, dtype=np.float16),
               "e": np.zeros((0, 4), dtype=np.int32), "f": np.array([7], dtype=np.uint8)}
    data = encode(tensors, {"k": "v"})
    got, meta = decode(data)
    assert meta == {"k": "v"}
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype.newbyteorder("<") and np.array_equal(got[k], v)
    # header is 8-byte aligned and the output is canonical
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
    assert encode(dict(reversed(list(tensors.items()))), {"k": "v"}) == data


def test_bf16_rounds_to_nearest_even_and_round_trips():
    x = np.array([1.0, -2.5, 3.14159, 1e-30, np.inf, np.nan], dtype=np.float32)
    bits = f32_to_bf16(x)
    back = bf16_to_f32(bits)
    assert back[0] == 1.0 and back[1] == -2.5 and abs(back[2] - 3.14159) < 0.02
    assert np.isinf(back[4]) and np.isnan(back[5])
    # 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0)
    assert bf16_to_f32(f32_to_bf16(np.array([1 + 2**-8], np.float32)))[0] == 1.0
    got, _ = decode(encode({"w": bits}, bf16={"w"}))
    assert np.array_equal(got["w"], bits)


@pytest.mark.parametrize("buf,msg", [
    (b"", "truncated"),
    (b"\x01\x00", "truncated"),
    (struct.pack("<Q", 100) + b"{}", "truncated: header claims 100"),
    (struct.pack("<Q", 2**40), "exceeds"),
    (_raw([1, 2]), "JSON object"),
    (struct.pack("<Q", 4) + b"{{{{", "not valid UTF-8 JSON"),
    (_raw({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),
     "truncated: tensor 't' ends at byte 8"),
    (_raw({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
     "8 bytes for shape"),
    (_raw({"t": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
     "unsupported dtype"),
    (_raw({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8),
     "non-negative"),
    (_raw({"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8),
     "not ordered"),
    (_raw({"t": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), "exactly dtype"),
    (_raw({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
     "gap or overlap"),
    (_raw({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9),
     "trailing bytes"),
    (_raw({"__metadata__": {"k": 1}}), "strings to strings"),
])
def test_malformed_files_are_refused_with_a_reason(buf, msg):
    with pytest.raises(SafetensorsError, match=msg):
        decode(buf)


def test_random_corruption_never_escapes_as_another_exception():
    base = encode({"a": np.ones((3, 4), np.float32), "b": np.arange(5, dtype=np.int64)}, {"m": "x"})
    rng = np.random.default_rng(0)
    for _ in range(2000):
        buf = bytearray(base)
        for _ in range(int(rng.integers(1, 4))):
            buf[int(rng.integers(len(buf)))] = int(rng.integers(256))
        buf = bytes(buf[:int(rng.integers(len(buf) + 1))])
        try:
            decode(buf)
        except SafetensorsError:
            pass
