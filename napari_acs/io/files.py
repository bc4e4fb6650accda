"""Atomic file writes: a file (or a folder of files) appears whole under its name, or not at all.

Every file napari-acs writes goes through :func:`atomic_path` (or :func:`atomic_folder`):
written beside its destination under a hidden temporary name, flushed to disk (fsync),
then renamed, so a crash or a kill never leaves half a file under the real name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def refuse_existing(path: str | os.PathLike, overwrite: bool, *, why: str = "exists") -> None:
    """Raise ``FileExistsError`` naming ``path`` if it exists and ``overwrite`` is false."""
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} {why}; pass overwrite=True (--overwrite) to replace it")


def _temporary_beside(path: Path) -> Path:
    """A hidden, unique name in ``path``'s folder that keeps its suffix (``.nii.gz`` stays gzip for nibabel)."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it to ``path``.

    On any error the temporary file is removed and ``path`` is untouched. Raises
    ``FileExistsError`` if ``path`` exists (also if it appeared meanwhile) unless ``overwrite``.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    tmp = _temporary_beside(path)
    try:
        yield tmp
        _fsync(tmp)
        refuse_existing(path, overwrite, why="appeared while writing")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success fsync the files written
    into it and rename it to ``path`` (an existing ``path`` is removed first, with ``overwrite``).

    On any error the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    tmp = _temporary_beside(path)
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                _fsync(file)
        refuse_existing(path, overwrite, why="appeared while writing")
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write a text file atomically (replacing it by default: for tables and logs)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)
