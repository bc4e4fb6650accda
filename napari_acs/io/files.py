"""Atomic file writes: a file (or a folder of files) appears whole under its name, or not at all.

Every file napari-acs writes goes through :func:`atomic_path` (or :func:`atomic_folder`):
written beside its destination under a hidden temporary name, flushed to disk (fsync),
renamed, and the folder's entry flushed too, so a crash or a kill never leaves half a
file under the real name. A write the operating system refuses (read-only folder, full
disk, a folder where the file should be) raises :class:`WriteError`, whose text is one
line naming the destination (never the temporary name) and the OS reason.

A kill (SIGKILL, power loss) can still leave a temporary file behind. Its name,
``.<name>.<pid>-<hex>.tmp<suffix>``, holds the writer's process id, so the next run in
that folder removes it (:func:`remove_stale_temporaries`) once that process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Our temporary names: ``.<name>.<pid>-<8 hex>.tmp[<suffix>]``; before the pid was added,
#: ``.<name>.<8 hex>.tmp[<suffix>]`` (removed once older than :data:`LEGACY_STALE_SECONDS`).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[0-9a-f]{8}\.tmp(?:\.[A-Za-z0-9.]+)?$")
#: A temporary file without a process id in its name is removed once it is this old (s).
LEGACY_STALE_SECONDS = 3600.0


class WriteError(OSError):
    """The operating system refused a write: ``str()`` is ``"cannot write PATH: reason"``.

    ``filename`` is the destination the caller asked for, ``errno`` / ``strerror`` the
    OS's code and reason (``ENOSPC`` "No space left on device", ``EROFS``, ``EACCES``...).
    """

    def __init__(self, path: str | os.PathLike, cause: OSError | str, *, code: int | None = None,
                 action: str = "write") -> None:
        if isinstance(cause, OSError):
            code, reason = cause.errno, cause.strerror or str(cause)
        else:
            reason = cause
        super().__init__(code, reason, os.fspath(path))
        self.action = action

    def __str__(self) -> str:
        return f"cannot {self.action} {self.filename}: {self.strerror}"

    def __reduce__(self):  # picklable (sent between torchrun processes) with its own arguments
        return (_write_error, (self.filename, self.strerror, self.errno, self.action))


def _write_error(path: str, reason: str, code: int | None, action: str) -> WriteError:
    return WriteError(path, reason, code=code, action=action)


def refuse_existing(path: str | os.PathLike, overwrite: bool, *, why: str = "exists") -> None:
    """Raise ``FileExistsError`` naming ``path`` if it exists and ``overwrite`` is false."""
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} {why}; pass overwrite=True (--overwrite) to replace it")


def _check_destination(path: Path) -> None:
    """:class:`WriteError` if ``path`` cannot be a file: a folder, or its folder does not exist."""
    if path.is_dir():
        raise WriteError(path, "it is a folder; give a file name", code=errno.EISDIR)
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise WriteError(path, f"its folder {path.parent} {what}", code=errno.ENOENT)


def check_writable_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, before long work, that ``path`` can be written: not a folder, its folder exists
    and takes new files, and it does not exist unless ``overwrite``.

    Raises :class:`WriteError` or ``FileExistsError``; returns ``path``.
    """
    path = Path(path)
    _check_destination(path)
    refuse_existing(path, overwrite)
    _probe(path.parent, path, action="write")
    return path


def writable_folder(path: str | os.PathLike) -> Path:
    """Create ``path`` (and its parents) if needed and check that it takes new files.

    Raises :class:`WriteError` naming the folder and the OS reason (read-only, permission,
    a file in the way), before anything else is written there.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file of that name
        raise WriteError(path, "it is a file, not a folder", code=errno.ENOTDIR, action="write to") from None
    except OSError as exc:
        raise WriteError(exc.filename or path, exc, action="create folder") from exc
    _probe(path, path, action="write to")
    return path


def _probe(folder: Path, named: Path, *, action: str) -> None:
    """Create and remove a temporary file in ``folder``: a :class:`WriteError` about ``named``
    if the OS refuses."""
    probe = _temporary_beside(folder / "napari-acs-write-check")
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        raise WriteError(named, exc, action=action) from exc
    with contextlib.suppress(OSError):
        probe.unlink()


def _temporary_beside(path: Path) -> Path:
    """A hidden, unique name in ``path``'s folder that keeps its suffix (``.nii.gz`` stays gzip
    for nibabel) and holds this process's id (see :func:`remove_stale_temporaries`)."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; best effort where the OS cannot."""
    with contextlib.suppress(OSError, AttributeError):
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _as_write_error(path: Path, exc: OSError) -> OSError:
    """``exc`` as a :class:`WriteError` about ``path`` (our own refusals pass through)."""
    if isinstance(exc, WriteError) or (isinstance(exc, FileExistsError) and exc.errno is None):
        return exc
    return WriteError(path, exc)


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it, rename it to ``path`` and
    fsync the folder.

    On any error the temporary file is removed and ``path`` is untouched. Raises
    ``FileExistsError`` if ``path`` exists (also if it appeared meanwhile) unless ``overwrite``,
    :class:`WriteError` if the OS refuses the write (read-only, full disk, missing folder).
    """
    path = Path(path)
    _check_destination(path)
    refuse_existing(path, overwrite)
    tmp = _temporary_beside(path)
    try:
        try:
            yield tmp
            _fsync(tmp)
            refuse_existing(path, overwrite, why="appeared while writing")
            os.replace(tmp, path)
        except OSError as exc:
            raise _as_write_error(path, exc) from exc
        _fsync_folder(path.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success fsync the files written
    into it and rename it to ``path`` (an existing ``path`` is removed first, with ``overwrite``).

    On any error the temporary folder is removed and ``path`` is untouched; the OS refusing
    a write raises :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    tmp = _temporary_beside(path)
    try:
        try:
            tmp.mkdir()
            yield tmp
            for file in tmp.rglob("*"):
                if file.is_file():
                    _fsync(file)
            _fsync_folder(tmp)
            refuse_existing(path, overwrite, why="appeared while writing")
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        except OSError as exc:
            raise _as_write_error(path, exc) from exc
        _fsync_folder(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write a text file atomically (replacing it by default: for tables and logs)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (ours, or another user's)."""
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill would end the process: keep
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


def is_stale_temporary(path: str | os.PathLike, *, now: float | None = None) -> bool:
    """Whether ``path`` is a temporary file (or folder) of :func:`atomic_path` whose writer is
    gone: its process id is not running, or (names without a process id) it is older than
    :data:`LEGACY_STALE_SECONDS`."""
    path = Path(path)
    match = _TEMPORARY.match(path.name)
    if match is None:
        return False
    if match["pid"] is not None:
        return not _process_alive(int(match["pid"]))
    try:
        age = (time.time() if now is None else now) - path.lstat().st_mtime
    except OSError:
        return False
    return age > LEGACY_STALE_SECONDS


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders that killed napari-acs writers left in ``folder``
    (not below it); returns what was removed. Those of running processes are kept."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not is_stale_temporary(entry):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed
