"""The one atomic-write helper (napari_acs.io.files): fsync before the rename, nothing half-written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from napari_acs.io.files import atomic_folder, atomic_path, atomic_write_text


@pytest.fixture
def disk_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order of fsync and rename calls, as ``"fsync"`` (a file), ``"fsync folder"`` / ``"rename"``."""
    calls: list[str] = []
    fsync, replace, rename = os.fsync, os.replace, Path.rename

    def spy_fsync(fd: int) -> None:
        calls.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("rename"), replace(a, b))[1])
    monkeypatch.setattr(Path, "rename", lambda self, target: (calls.append("rename"), rename(self, target))[1])
    return calls


def test_file_is_flushed_to_disk_before_it_gets_its_name(tmp_path: Path, disk_calls: list[str]) -> None:
    atomic_write_text(tmp_path / "table.csv", "a,b\n")
    assert disk_calls == ["fsync", "rename", "fsync folder"]  # the file, then its new name
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_failed_file_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "table.csv", "old\n")
    with pytest.raises(RuntimeError), atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    with pytest.raises(FileExistsError, match="table.csv exists; pass overwrite=True"):
        atomic_write_text(path, "new\n", overwrite=False)


def test_folder_appears_whole_with_every_file_flushed(tmp_path: Path, disk_calls: list[str]) -> None:
    with atomic_folder(tmp_path / "case") as folder:
        for name in ("t1.nii.gz", "seg.nii.gz"):
            (folder / name).write_bytes(b"x")
        assert not (tmp_path / "case").exists()
    assert disk_calls == ["fsync", "fsync", "fsync folder", "rename", "fsync folder"]
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == ["seg.nii.gz", "t1.nii.gz"]
    assert [p.name for p in tmp_path.iterdir()] == ["case"]


def test_failed_folder_write_leaves_the_old_folder(tmp_path: Path) -> None:
    with atomic_folder(tmp_path / "case") as folder:
        (folder / "old.nii.gz").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="case exists"), atomic_folder(tmp_path / "case"):
        pass
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "case", overwrite=True) as folder:
        (folder / "new.nii.gz").write_bytes(b"half")
        raise RuntimeError("killed")
    assert [p.name for p in (tmp_path / "case").iterdir()] == ["old.nii.gz"]
    with atomic_folder(tmp_path / "case", overwrite=True) as folder:
        (folder / "new.nii.gz").write_bytes(b"new")
    assert [p.name for p in (tmp_path / "case").iterdir()] == ["new.nii.gz"]
    assert [p.name for p in tmp_path.iterdir()] == ["case"]
