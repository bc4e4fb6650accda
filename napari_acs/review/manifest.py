"""The review state of a cohort: one small JSON manifest in the cohort folder, locked and replaced atomically.

``<cohort>/.napari-acs/review.json`` holds, per case touched so far, its status and
what was made for it (file names relative to ``.napari-acs``). The hidden folder is
skipped by case discovery, so nothing napari-acs writes there can break loading a case.
Every change is one :meth:`Manifest.update`: under an exclusive ``flock`` on
``review.lock`` it reads the file again, changes one case, and replaces the file whole,
so two viewers (or a viewer and a command) on one cohort never lose each other's work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from napari_acs.io.files import atomic_write_text

STATE_FOLDER = ".napari-acs"
MANIFEST_NAME = "review.json"
LOCK_NAME = "review.lock"
VERSION = 1
#: The life of a case in review, in order.
STATUSES = ("new", "segmented", "reviewed", "corrected")


class ManifestError(ValueError):
    """The manifest cannot be read (another version, not JSON, not a napari-acs manifest)."""


class Manifest:
    """The review manifest of the cohort in ``folder`` (created on the first change)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder) / STATE_FOLDER
        self.path = self.folder / MANIFEST_NAME

    def read(self) -> dict[str, dict]:
        """Case id -> its record (a copy); empty before the first change."""
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{self.path}: cannot be read ({exc}); move it away to start the review afresh") \
                from None
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("cases"), dict):
            raise ManifestError(f"{self.path}: not a version-{VERSION} napari-acs review manifest")
        return data["cases"]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK_NAME, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def update(self, case_id: str, change: Callable[[dict], None]) -> dict:
        """Apply ``change`` to ``case_id``'s record (a dict, ``{}`` if new) and save; returns the record."""
        with self._locked():
            cases = self.read()
            record = dict(cases.get(case_id, {}))
            change(record)
            cases[case_id] = record
            text = json.dumps({"version": VERSION, "cases": cases}, indent=1, sort_keys=True)
            atomic_write_text(self.path, text + "\n", overwrite=True)
        return record
