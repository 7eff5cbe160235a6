"""PyTorch checkpoint files (`torch.save`) read and written with the standard library and NumPy.

Two formats are read, as `torch.load` reads them:

- zip (torch >= 1.6): a zip archive `NAME/data.pkl` (the pickled object) plus one record
  `NAME/data/KEY` of raw little-endian bytes per storage;
- legacy (older files, or `_use_new_zipfile_serialization=False`): five pickles in a row (magic
  number, protocol version, system info, the object, the sorted storage keys), then each storage's
  raw bytes, each preceded by its element count as an int64.

In both, the pickled object refers to a storage by a persistent id
`('storage', <torch.XStorage class>, key, location, numel[, view])` and builds each tensor with
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`. The unpickler here resolves
only those torch names (and `collections.OrderedDict`); any other global, such as the
`argparse.Namespace` of a training checkpoint or an optimizer's classes, becomes an `Opaque`
placeholder, so nothing from the file is ever imported or executed.

`load(path)` returns the object with `Tensor` leaves: shape and dtype are known at once, the bytes are
read by `Tensor.numpy()` (bfloat16 is widened to float32). `save(obj, path)` writes dicts, lists and
NumPy arrays in the zip format, which `torch.load` reads (also with `weights_only=True`).
"""

import collections
import dataclasses
import io
import os
import pickle
import struct
import sys
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage class name → NumPy dtype of its elements (bfloat16 is read as uint16 bits).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


class Opaque:
    """An object of a class this reader does not rebuild (e.g. `argparse.Namespace`), kept inert.

    `args` are what the pickle passed to its constructor and `state` what it set on it.
    """

    module = ""
    name = ""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"Opaque({self.module}.{self.name})"


@dataclasses.dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self):
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclasses.dataclass
class _Storage:
    """Where one storage's bytes are: a zip record, or a byte range of a legacy file."""

    source: "_Source"
    key: str
    dtype: np.dtype
    numel: int
    element_offset: int = 0  # a legacy view of a larger storage starts here


@dataclasses.dataclass
class Tensor:
    """A tensor of a loaded file; `numpy()` reads its values."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        """The dtype `numpy()` returns (bfloat16 is widened to float32)."""
        return np.dtype(np.float32) if self.bfloat16 else self.storage.dtype

    @property
    def bfloat16(self) -> bool:
        return self.storage.dtype == np.uint16

    def numpy(self) -> np.ndarray:
        itemsize = self.storage.dtype.itemsize
        if any(n == 0 for n in self.shape):
            return np.zeros(self.shape, self.dtype)
        start = self.storage.element_offset + self.offset
        extent = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))
        if start + extent > self.storage.element_offset + self.storage.numel:
            raise ValueError(f"Tensor of shape {self.shape} reaches past the end of its storage {self.storage.key}.")
        raw = self.storage.source.read(self.storage.key, start * itemsize, extent * itemsize)
        flat = np.frombuffer(raw, self.storage.dtype.newbyteorder("<"), count=extent)
        strides = tuple(s * itemsize for s in self.stride)
        values = np.lib.stride_tricks.as_strided(flat, self.shape, strides, writeable=False)
        values = np.array(values)  # a C-ordered copy (0-d stays 0-d)
        if self.bfloat16:
            values = (values.astype(np.uint32) << 16).view(np.float32)
        return values


class _Source:
    """Reads byte ranges of the storages of one file (reopened per read, so nothing stays open)."""

    def __init__(self, path: str, prefix: str = "", legacy_offsets=None):
        self.path, self.prefix, self.legacy_offsets = path, prefix, legacy_offsets

    def read(self, key: str, start: int, size: int) -> bytes:
        if self.legacy_offsets is not None:
            with open(self.path, "rb") as f:
                f.seek(self.legacy_offsets[key] + start)
                data = f.read(size)
        else:
            try:
                with zipfile.ZipFile(self.path) as archive, archive.open(f"{self.prefix}data/{key}") as f:
                    f.seek(start)
                    data = f.read(size)
            except zipfile.BadZipFile as error:
                damaged = f"{self.path}: storage {key} is damaged ({error}); copy or download it again."
                raise ValueError(damaged) from error
        if len(data) != size:
            raise ValueError(f"{self.path}: storage {key} is truncated.")
        return data


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return Tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
    return data


# The only globals a file may name that are rebuilt for real; every other one becomes `Opaque`.
_KNOWN = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, source: _Source):
        super().__init__(file, encoding="utf-8")
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) in _KNOWN:
            return _KNOWN[(module, name)]
        if module in ("torch", "torch.storage", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        return type(name, (Opaque,), {"module": module, "name": name})

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            return Opaque(pid)  # e.g. ('module', cls, source_file, source) of a pickled nn.Module class
        _, storage_type, key, _location, numel, *view = pid
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"{self.source.path}: unknown storage type {storage_type!r}.")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(self.source, key, storage_type.dtype, int(numel))
        storage = self.storages[key]
        if view and view[0] is not None:  # legacy view: (view_key, offset, size) into the root storage
            view_key, offset, size = view[0]
            return _Storage(self.source, key, storage.dtype, int(size), int(offset))
        return storage


def load(path: str | os.PathLike):
    """The object saved in a PyTorch file, with `Tensor` leaves (read on `Tensor.numpy()`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist.")
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip:
        return _load_zip(path)
    return _load_legacy(path)


def _load_zip(path: str):
    try:
        return _read_zip(path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path} is a damaged or truncated zip file ({error}); copy or download it again.") from error


def _read_zip(path: str):
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
        if not names:
            raise ValueError(f"{path} is a zip file but not a PyTorch checkpoint (no data.pkl).")
        prefix = names[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise ValueError(f"{path} was saved big-endian; only little-endian files are supported.")
        data = archive.read(names[0])
    return _Unpickler(io.BytesIO(data), _Source(path, prefix)).load()


def _load_legacy(path: str):
    with open(path, "rb") as f:
        header = lambda: _Unpickler(f, _Source(path)).load()  # noqa: E731 - one unpickler per pickle
        try:
            magic = header()
        except Exception as e:  # noqa: BLE001 - any unpickling failure means: not a PyTorch file
            raise ValueError(f"{path} is not a PyTorch checkpoint (neither zip nor legacy format).") from e
        if magic != LEGACY_MAGIC:
            raise ValueError(f"{path} is not a PyTorch checkpoint (neither zip nor legacy format).")
        protocol = header()
        if protocol != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy protocol version {protocol}.")
        sys_info = header()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise ValueError(f"{path} was saved big-endian; only little-endian files are supported.")
        offsets: dict[str, int] = {}
        unpickler = _Unpickler(f, _Source(path, legacy_offsets=offsets))
        obj = unpickler.load()
        for key in header():
            (count,) = struct.unpack("<q", f.read(8))
            storage = unpickler.storages.get(str(key))
            if storage is None:
                raise ValueError(f"{path}: storage {key} is listed but never used.")
            offsets[str(key)] = f.tell()
            f.seek(count * storage.dtype.itemsize, os.SEEK_CUR)
        missing = set(unpickler.storages) - set(offsets)
        if missing:
            raise ValueError(f"{path}: storages {sorted(missing)} have no data (truncated file?).")
    return obj


def to_numpy(obj):
    """`obj` with every `Tensor` in its dicts, lists and tuples read into a NumPy array."""
    if isinstance(obj, Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return type(obj)((k, to_numpy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_numpy(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------------- writing

# NumPy dtype name → the torch storage class a tensor of it is saved with.
_SAVE_STORAGES = {
    "float64": "DoubleStorage",
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}
_ALIGNMENT = 64  # storage records start at multiples of this, as torch writes them


class _Global:
    """Pickles as a reference to `module.name` (a torch function or class) without importing it."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise TypeError("A reference to a torch global; it is only written into files.")


_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
_STORAGE_GLOBALS = {dtype: _Global("torch", storage) for dtype, storage in _SAVE_STORAGES.items()}


@dataclasses.dataclass(eq=False)
class _StorageRef:
    key: str
    array: np.ndarray


class _Pickler(pickle._Pickler):  # the Python pickler: its dispatch table can write torch globals
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.storages: list[_StorageRef] = []

    def save_torch_global(self, obj: _Global):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[_Global] = save_torch_global

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", _STORAGE_GLOBALS[obj.array.dtype.name], obj.key, "cpu", obj.array.size)
        return None

    def reducer_override(self, obj):
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        if obj.dtype.name not in _SAVE_STORAGES:
            raise TypeError(f"Cannot save an array of dtype {obj.dtype} as a torch tensor.")
        array = obj if obj.flags.c_contiguous else obj.copy(order="C")  # 0-d stays 0-d
        ref = _StorageRef(str(len(self.storages)), array)
        self.storages.append(ref)
        stride = tuple(s // array.itemsize for s in array.strides) if array.size else (1,) * array.ndim
        args = (ref, 0, tuple(array.shape), stride, False, collections.OrderedDict())
        return _REBUILD_TENSOR, args


def save(obj, path: str | os.PathLike, archive_name: str = "archive") -> None:
    """Writes `obj` (dicts, lists, tuples, numbers, strings and NumPy arrays) as `torch.save` does."""
    if sys.byteorder != "little":
        raise NotImplementedError("Writing PyTorch files is implemented for little-endian machines only.")
    buffer = io.BytesIO()
    pickler = _Pickler(buffer)
    pickler.dump(obj)
    records = [("data.pkl", buffer.getvalue()), ("byteorder", b"little")]
    records += [(f"data/{ref.key}", ref.array) for ref in pickler.storages]
    records += [("version", b"3\n")]
    with zipfile.ZipFile(os.fspath(path), "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, data in records:
            _write_record(archive, f"{archive_name}/{name}", data)


def _write_record(archive: zipfile.ZipFile, name: str, data) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    view = memoryview(data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else data)
    info.file_size = view.nbytes
    # Pad the local header's extra field so that the data starts on an aligned offset.
    header_end = archive.fp.tell() + 30 + len(name.encode()) + 4
    info.extra = struct.pack("<HH", 0x4246, (-header_end) % _ALIGNMENT) + b"Z" * ((-header_end) % _ALIGNMENT)
    with archive.open(info, "w") as f:
        f.write(view)
