"""MGMT labels: the RSNA-MICCAI 2021 ``train_labels.csv`` (``BraTS21ID,MGMT_value``) matched to cases.

RSNA writes subject ids as plain numbers (``12``) or zero-padded (``00012``); BraTS
2021 case ids are ``BraTS2021_00012``, BraTS 2023 ones ``BraTS-GLI-00012-000``, RSNA's
own folders ``00012``. All of these are the subject number 12.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

ID_COLUMN = "BraTS21ID"
VALUE_COLUMN = "MGMT_value"
_NUMBERED_ID = (
    re.compile(r"^(?:BraTS(?:20\d\d)?_)?(\d+)$", re.IGNORECASE),  # 12, 00012, BraTS2021_00012
    re.compile(r"^BraTS-[A-Za-z]+-(\d+)-\d+$", re.IGNORECASE),  # BraTS-GLI-00012-000
)


class LabelsCSVError(ValueError):
    """The labels CSV is unreadable, lacks a column, or holds a bad or duplicate row."""


def subject_number(case_id: str) -> int | None:
    """The subject number of a BraTS / RSNA id (``"BraTS2021_00012"`` -> 12), or ``None``."""
    for pattern in _NUMBERED_ID:
        match = pattern.match(case_id.strip())
        if match:
            return int(match.group(1))
    return None


def read_mgmt_csv(path: str | Path) -> dict[str, int]:
    """``{subject id as written: 0 or 1}`` from a ``BraTS21ID,MGMT_value`` CSV.

    Raises :class:`LabelsCSVError` naming the file (and line) for a missing file or
    column, a value other than 0/1, or a subject listed twice.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            columns = reader.fieldnames or []
            missing = [c for c in (ID_COLUMN, VALUE_COLUMN) if c not in columns]
            if missing:
                raise LabelsCSVError(
                    f"{path}: no column {' or '.join(missing)} (header is {','.join(columns) or 'empty'}); "
                    f"expected {ID_COLUMN},{VALUE_COLUMN} as in the RSNA-MICCAI 2021 train_labels.csv"
                )
            rows = [(reader.line_num, row[ID_COLUMN], row[VALUE_COLUMN]) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsCSVError(f"{path}: cannot read the labels CSV ({exc})") from exc
    labels: dict[str, int] = {}
    seen: dict[object, str] = {}
    for line, subject, value in rows:
        subject = (subject or "").strip()
        if not subject:
            raise LabelsCSVError(f"{path}, line {line}: empty {ID_COLUMN}")
        if (value or "").strip() not in ("0", "1"):
            raise LabelsCSVError(f"{path}, line {line}: {VALUE_COLUMN} of {subject} is {value!r}; expected 0 or 1")
        key = subject_number(subject)
        key = subject if key is None else key
        if key in seen:
            raise LabelsCSVError(f"{path}, line {line}: subject {subject} is listed twice (also as {seen[key]})")
        seen[key] = subject
        labels[subject] = int(value)
    return labels


@dataclass(frozen=True)
class LabelMatch:
    """Cases paired with CSV labels: ``labels`` maps case id -> 0/1 for the matched cases."""

    labels: dict[str, int]
    rows_without_case: list[str]
    cases_without_row: list[str]

    def warnings(self, csv_path: str | Path) -> list[str]:
        """Human-readable lines about what did not match (empty if everything did)."""
        out = []
        for what, ids in (
            (f"rows of {Path(csv_path).name} without a case in the cohort", self.rows_without_case),
            (f"cases without a row in {Path(csv_path).name} (not used)", self.cases_without_row),
        ):
            if ids:
                shown = ", ".join(ids[:10]) + (f", ... ({len(ids)} in all)" if len(ids) > 10 else "")
                out.append(f"{len(ids)} {what}: {shown}")
        return out


def match_labels(labels: dict[str, int], case_ids: list[str], folder_names: list[str] | None = None) -> LabelMatch:
    """Pair case ids with CSV subject ids by subject number (zero padding ignored).

    A case is identified by its id, or else by its folder name (``folder_names``, same
    order). Ids without a number must be equal as strings. Raises ``ValueError`` if two
    cases are the same subject.
    """
    by_key = {(n if (n := subject_number(s)) is not None else s): s for s in labels}
    folder_names = folder_names or [""] * len(case_ids)
    matched: dict[str, int] = {}
    used: dict[object, str] = {}
    missing = []
    for case_id, folder in zip(case_ids, folder_names):
        keys = [k for name in (case_id, folder) if name for k in (subject_number(name), name) if k is not None]
        key = next((k for k in keys if k in by_key), None)
        if key is None:
            missing.append(case_id)
            continue
        if key in used:
            raise ValueError(f"cases {used[key]} and {case_id} are both subject {by_key[key]} of the labels CSV")
        used[key] = case_id
        matched[case_id] = labels[by_key[key]]
    unused = [subject for key, subject in by_key.items() if key not in used]
    return LabelMatch(matched, unused, missing)
