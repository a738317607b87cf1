#!/usr/bin/env python3
"""Convert a PyTorch checkpoint in the old (pre-1.6, non-zip) serialisation
format to a safetensors file, with plain `pickle` and `numpy` (no torch).

    convert.py IN.pth OUT.safetensors [--meta KEY=VALUE ...]

The old format is a sequence of pickles on one stream:

1. the magic number 0x1950a86a20f9469cfc6c, the protocol version (1001) and a
   small dict of system information (byte order, sizes of C types);
2. the object itself (here an OrderedDict name -> tensor), whose tensors are
   pickled as calls of `torch._utils._rebuild_tensor_v2(storage,
   storage_offset, size, stride, requires_grad, backward_hooks)` and whose
   storages are persistent ids `("storage", StorageType, key, location,
   numel, view_metadata)`;
3. the list of storage keys, in the order their bytes follow;
4. for each storage: its element count as a little-endian int64, then the
   raw little-endian elements.

A tensor is a view of its storage: it starts at `storage_offset` and steps
`stride` elements along each dimension. Many tensors of this checkpoint are
not contiguous (the convolution kernels keep TensorFlow's HWIO order in
memory), so every tensor is gathered through its strides and written as a
contiguous, row-major array under its original name.

The safetensors file (a little-endian u64 header length, a JSON header of
`{name: {dtype, shape, data_offsets}}` plus `__metadata__`, padded with
spaces to a multiple of 8 bytes, then the tensor bytes) is written here with
`json` and `struct`; the format is documented with the safetensors project.
"""

from __future__ import annotations

import argparse
import collections
import json
import pickle
import struct
import sys
from pathlib import Path

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001

# storage class name -> (numpy dtype, safetensors dtype)
STORAGES = {
    "FloatStorage": (np.float32, "F32"),
    "DoubleStorage": (np.float64, "F64"),
    "HalfStorage": (np.float16, "F16"),
    "LongStorage": (np.int64, "I64"),
    "IntStorage": (np.int32, "I32"),
    "ShortStorage": (np.int16, "I16"),
    "CharStorage": (np.int8, "I8"),
    "ByteStorage": (np.uint8, "U8"),
    "BoolStorage": (np.bool_, "BOOL"),
}


def fail(msg: str) -> None:
    sys.exit(f"convert.py: {msg}")


class StorageType:
    """Stands for `torch.FloatStorage` & co. in the unpickled object."""

    def __init__(self, name: str):
        if name not in STORAGES:
            fail(f"unsupported storage type torch.{name}")
        self.name = name
        self.dtype, self.st_dtype = STORAGES[name]


class Storage:
    """A storage whose bytes are read after the main pickle."""

    def __init__(self, kind: StorageType, key: str, numel: int):
        self.kind, self.key, self.numel = kind, key, numel
        self.data: np.ndarray | None = None


class TensorRef:
    """A strided view of a storage, resolved once the storages are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def is_row_major(self) -> bool:
        expect, want = 1, []
        for n in reversed(self.size):
            want.append(expect)
            expect *= n
        return all(n == 1 or st == w for n, st, w in zip(self.size, self.stride, reversed(want)))

    def materialise(self, name: str) -> np.ndarray:
        s = self.storage
        if len(self.size) != len(self.stride):
            fail(f"{name}: size {self.size} and stride {self.stride} differ in rank")
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, dtype=s.kind.dtype)
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride))
        if self.offset < 0 or any(st < 0 for st in self.stride) or last >= s.numel:
            fail(
                f"{name}: view (offset {self.offset}, size {self.size}, stride "
                f"{self.stride}) reaches outside its storage of {s.numel} elements"
            )
        item = s.data.itemsize
        view = np.lib.stride_tricks.as_strided(
            s.data[self.offset :],
            shape=self.size,
            strides=tuple(st * item for st in self.stride),
            writeable=False,
        )
        return np.array(view, order="C", copy=True)  # (ascontiguousarray makes 0-d 1-d)


def rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, *_):
    if not isinstance(storage, Storage):
        fail(f"a tensor refers to {storage!r}, not a storage")
    return TensorRef(storage, storage_offset, size, stride)


class Unpickler(pickle.Unpickler):
    """Resolves only the handful of globals a state dict needs."""

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return rebuild_tensor_v2
        if module == "torch" and name.endswith("Storage"):
            return StorageType(name)
        fail(f"the checkpoint needs {module}.{name}, which this converter does not handle")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            fail(f"unexpected persistent id {pid!r}")
        _, kind, key, _location, numel, view_metadata = pid
        if view_metadata is not None:
            fail(f"storage {key} is a storage view ({view_metadata}), not supported")
        if key not in self.storages:
            self.storages[key] = Storage(kind, key, int(numel))
        return self.storages[key]


def read_legacy(path: Path) -> "collections.OrderedDict[str, np.ndarray]":
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head == b"PK":
            fail(f"{path} is a zip-format (torch >= 1.6) checkpoint, not the old format")
        magic = pickle.load(f)
        if magic != MAGIC:
            fail(f"{path} is not a PyTorch checkpoint (magic {magic!r})")
        protocol = pickle.load(f)
        if protocol != PROTOCOL:
            fail(f"{path}: protocol version {protocol}, expected {PROTOCOL}")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", False):
            fail(f"{path} was written on a big-endian machine")
        storages: dict[str, Storage] = {}
        obj = Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            if key not in storages:
                fail(f"{path}: storage {key} is listed but no tensor uses it")
            s = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            if count != s.numel:
                fail(f"{path}: storage {key} holds {count} elements, the pickle says {s.numel}")
            nbytes = count * np.dtype(s.kind.dtype).itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                fail(f"{path} is truncated (storage {key}: {len(raw)} of {nbytes} bytes)")
            s.data = np.frombuffer(raw, dtype=np.dtype(s.kind.dtype).newbyteorder("<"))
        if f.read(1):
            fail(f"{path} has trailing bytes after its last storage")
    if not isinstance(obj, dict):
        fail(f"{path} holds a {type(obj).__name__}, not a state dict")
    out = collections.OrderedDict()
    for name, t in obj.items():
        if not isinstance(t, TensorRef):
            fail(f"{path}: entry {name} is a {type(t).__name__}, not a tensor")
        if t.storage.data is None:
            fail(f"{path}: the bytes of {name}'s storage were never read")
        out[name] = (t.materialise(name), t.storage.kind.st_dtype, t.is_row_major())
    return out


def write_safetensors(path: Path, tensors, metadata: dict[str, str]) -> None:
    header = {"__metadata__": metadata}
    offset = 0
    for name, (a, dt, _) in tensors.items():
        header[name] = {
            "dtype": dt,
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a, _, _ in tensors.values():
            f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes(order="C"))
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--meta", action="append", default=[], help="KEY=VALUE for __metadata__")
    args = ap.parse_args()
    tensors = read_legacy(args.src)
    meta = {"format": "pt", "converted_from": args.src.name}
    for kv in args.meta:
        k, _, v = kv.partition("=")
        meta[k] = v
    args.dst.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(args.dst, tensors, meta)
    floats = sum(a.size for a, _, _ in tensors.values() if a.dtype.kind == "f")
    strided = sum(1 for _, _, row_major in tensors.values() if not row_major)
    print(
        f"convert.py: {len(tensors)} tensors ({strided} strided views made contiguous), "
        f"{floats} floating-point values -> {args.dst}"
    )


if __name__ == "__main__":
    main()
