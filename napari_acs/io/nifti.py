"""Reading a NIfTI file safely: the header is checked before any voxel is allocated or decompressed.

A forged header can claim 10^15 voxels in a tiny file, and a 2 MB ``.nii.gz`` can
decompress to gigabytes. So the header is read first (the first bytes of the file, or
of the gzip stream), its shape, voxel type and uncompressed size are checked against
:data:`MAX_VOXELS` and, when the caller knows it, the expected shape; a ``.nii.gz`` is
then decompressed to at most the size its header states, and a stream that holds more
is refused. Every refusal is a :class:`~napari_acs.io.BratsInputError` naming the file.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
from isal import isal_zlib
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from napari_acs.io.errors import BratsInputError

#: Largest volume accepted, in voxels (512 x 512 x 512; a BraTS volume is 240 x 240 x 155 =
#: 8.9 million). Four such modalities take 2 GiB as float32, the most a 2-core, 24 GB
#: machine can segment comfortably.
MAX_VOXELS = 512**3
#: Header bytes read first: a NIfTI-2 header (540) is the larger of the two.
HEADER_BYTES = 540

GZIP_ERRORS = (EOFError, zlib.error, isal_zlib.error, gzip.BadGzipFile)
READ_ERRORS = (OSError, ValueError, ImageFileError, HeaderDataError, MemoryError)
GZIP_MAGIC = b"\x1f\x8b"
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def is_nifti_name(path: str | Path) -> bool:
    """Whether a file name ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | Path) -> str:
    """The file name without ``.nii`` / ``.nii.gz``: ``"scan"`` for ``/x/scan.nii.gz``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _header(first: bytes, path: Path) -> nib.Nifti1Header:
    """The NIfTI-1 or NIfTI-2 header at the start of ``first``."""
    sizeof_hdr = {int.from_bytes(first[:4], order) for order in ("little", "big")}
    header_class = nib.Nifti2Header if nib.Nifti2Header.sizeof_hdr in sizeof_hdr else nib.Nifti1Header
    if len(first) < header_class.sizeof_hdr:
        raise BratsInputError(path, f"is {len(first)} bytes long: too short for a NIfTI header")
    try:
        return header_class.from_fileobj(_BytesReader(first))
    except READ_ERRORS as exc:
        raise BratsInputError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc


class _BytesReader:
    """The minimal file object nibabel's header parser reads from."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk, self._at = self._data[self._at : end], min(end, len(self._data))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        self._at = offset if whence == 0 else self._at + offset if whence == 1 else len(self._data) + offset
        return self._at

    def tell(self) -> int:
        return self._at


def check_header(header: nib.Nifti1Header, path: Path, expected_shape: tuple[int, int, int] | None = None,
                 *, allow_4d: bool = False) -> tuple[tuple[int, int, int], int]:
    """The volume's 3D shape and the file's uncompressed size (bytes), or a refusal naming ``path``.

    ``allow_4d``: a 4D file (X, Y, Z, T), T volumes of one grid (a time series, diffusion
    directions, stacked sequences), is accepted too, its X * Y * Z * T voxels counted
    against :data:`MAX_VOXELS`; otherwise only a 3D volume (or X, Y, Z, 1) is.
    """
    shape = tuple(int(size) for size in header.get_data_shape())
    if any(size < 0 for size in shape):
        raise BratsInputError(path, f"has a header with negative sizes {shape}")
    if allow_4d:
        if any(size != 1 for size in shape[4:]):
            raise BratsInputError(path, f"is a {len(shape)}D image (shape {shape}); expected a 3D or 4D volume")
    elif any(size != 1 for size in shape[3:]):
        raise BratsInputError(path, f"is a {len(shape)}D volume (shape {shape}); expected one 3D volume per file")
    if len(shape) < 3 or min(shape[:3]) < 2:
        dims = sum(size > 1 for size in shape[:3])
        raise BratsInputError(path, f"is a {dims}D image (shape {shape}); expected a 3D volume")
    volumes = shape[3] if allow_4d and len(shape) > 3 else 1
    voxels = math.prod(shape[:3]) * volumes
    if voxels > MAX_VOXELS:
        sizes = " x ".join(map(str, shape[:3] + ((volumes,) if volumes > 1 else ())))
        raise BratsInputError(path, f"header claims {sizes} = {voxels:,} voxels, "
                                    f"more than the {MAX_VOXELS:,} accepted (512^3)")
    shape3 = shape[:3]
    if expected_shape is not None and tuple(shape3) != tuple(expected_shape):
        raise BratsInputError(path, f"shape {shape3} differs from the expected {tuple(expected_shape)}")
    dtype = header.get_data_dtype()
    if dtype.kind not in "biuf":
        raise BratsInputError(path, f"has voxel type {dtype}; expected integer or float voxels")
    offset = int(header.get_data_offset()) or header.sizeof_hdr + 4
    return shape3, offset + voxels * dtype.itemsize


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Whatever reading ``path`` raises, as one :class:`BratsInputError` naming it."""
    try:
        yield
    except BratsInputError:
        raise
    except GZIP_ERRORS as exc:
        raise BratsInputError(path, f"corrupt or truncated gzip file ({type(exc).__name__}: {exc})") from exc
    except READ_ERRORS as exc:
        raise BratsInputError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc


def read_header(path: str | Path, *, allow_4d: bool = False) -> nib.Nifti1Header:
    """Only the header of a NIfTI file (the first bytes of the file, or of its gzip stream),
    checked like :func:`check_header`; nothing else is read or decompressed. A ``.nii`` file
    shorter than its header says is refused here too. Cheap enough for a reader deciding
    whether a file is its own."""
    path = Path(path)
    with _read_errors(path):
        with open(path, "rb") as stream:
            first = stream.read(64 * 1024)  # a gzip stream's header bytes come from its first few KiB
        if path.name.endswith(".gz"):
            if not first.startswith(GZIP_MAGIC):
                raise BratsInputError(path, "not gzip-compressed although its name ends in .gz: not a .nii.gz file")
            first = zlib.decompressobj(wbits=31).decompress(first, HEADER_BYTES)
        header = _header(first, path)
        _, size = check_header(header, path, allow_4d=allow_4d)
        if not path.name.endswith(".gz") and path.stat().st_size < size:
            raise BratsInputError(path, f"is {path.stat().st_size:,} bytes but its header needs {size:,}: truncated file")
        return header


def open_nifti(path: str | Path, *, expected_shape: tuple[int, int, int] | None = None, allow_4d: bool = False
               ) -> tuple[nib.Nifti1Image, tuple[int, int, int]]:
    """A NIfTI image (``.nii`` or ``.nii.gz``, wholly in memory for ``.gz``) and its 3D shape,
    after the header checks of :func:`check_header` (``allow_4d``: a 4D file too); a ``.gz``
    is decompressed to at most its stated size and its CRC checked."""
    path = Path(path)
    with _read_errors(path):
        if path.name.endswith(".gz"):
            return _open_gzip(path, expected_shape, allow_4d)
        with open(path, "rb") as stream:
            first = stream.read(HEADER_BYTES)
        shape, size = check_header(_header(first, path), path, expected_shape, allow_4d=allow_4d)
        actual = path.stat().st_size
        if actual < size:
            raise BratsInputError(path, f"is {actual:,} bytes but its header needs {size:,}: truncated file")
        return nib.load(path), shape


def _open_gzip(path: Path, expected_shape: tuple[int, int, int] | None, allow_4d: bool = False
               ) -> tuple[nib.Nifti1Image, tuple[int, int, int]]:
    compressed = path.read_bytes()
    if not compressed.startswith(GZIP_MAGIC):
        raise BratsInputError(path, "not gzip-compressed although its name ends in .gz: not a .nii.gz file")
    first = isal_zlib.decompressobj(wbits=31).decompress(compressed, HEADER_BYTES)
    shape, size = check_header(_header(first, path), path, expected_shape, allow_4d=allow_4d)
    # ISA-L inflates about 2x faster than zlib (the same stream API)
    stream = isal_zlib.decompressobj(wbits=31)
    data = stream.decompress(compressed, size + 1)
    if len(data) > size or stream.unconsumed_tail:
        raise BratsInputError(path, f"decompresses to more than the {size:,} bytes its header states "
                                    "(a malformed or malicious file)")
    data += stream.flush()
    if len(data) > size:
        raise BratsInputError(path, f"decompresses to more than the {size:,} bytes its header states "
                                    "(a malformed or malicious file)")
    if not stream.eof:
        raise BratsInputError(path, "corrupt or truncated gzip file (EOFError: the stream ends before its end marker)")
    del compressed
    image_class = nib.Nifti2Image if isinstance(_header(data[:HEADER_BYTES], path), nib.Nifti2Header) \
        else nib.Nifti1Image
    return image_class.from_bytes(data), shape
