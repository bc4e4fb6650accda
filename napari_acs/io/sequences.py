"""MRI sequences of files with any names: the canonical names, their aliases, a guess from a file name.

A radiologist's exam arrives with scanner or PACS names (``T1_MPRAGE_post_gd.nii.gz``,
``AX_FLAIR.nii``, ``sub-01_ce-gd_T1w.nii.gz``), not BraTS names. The user assigns each file
a sequence (the widgets show :func:`guess_sequence` first); the segmenter takes the four
channels in the order of :data:`SEQUENCES` (= BraTS 2023 names; BraTS 2021 names are
aliases: t1 = t1n, t1ce = t1c, t2 = t2w, flair = t2f).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from napari_acs.io.errors import BratsInputError

#: The network's input channels, in order (BraTS 2023 names).
SEQUENCES: tuple[str, str, str, str] = ("t1n", "t1c", "t2w", "t2f")
#: What a radiologist calls them (and the image layers are named).
SEQUENCE_LABELS: dict[str, str] = {"t1n": "T1", "t1c": "T1ce", "t2w": "T2", "t2f": "FLAIR"}
#: Names accepted for a sequence (``load_case(files={...})`` keys, ``--flair``...): both BraTS namings.
ALIASES: dict[str, str] = {
    "t1n": "t1n", "t1": "t1n",
    "t1c": "t1c", "t1ce": "t1c",
    "t2w": "t2w", "t2": "t2w",
    "t2f": "t2f", "flair": "t2f",
}
SEG = "seg"

# Tokens of a file name (lower case, split at anything not a letter or digit) that name a
# sequence family. "post"/"gd" mark contrast (T1 + contrast = T1c), "flair" wins over "t2"
# (T2-FLAIR is FLAIR); anything pointing at two families is ambiguous.
_CONTRAST = frozenset({"t1c", "t1ce", "t1gd", "t1post", "t1wce", "t1wc", "post", "postcontrast", "gd", "gad",
                       "gado", "gadolinium", "contrast", "ce"})
_PRE = frozenset({"pre", "precontrast", "native", "t1pre", "t1native", "t1n"})
_T1 = frozenset({"t1", "t1w", "t1wi", "mprage", "spgr", "bravo"})
_T2 = frozenset({"t2", "t2w", "t2wi", "t2tse", "t2fse"})
_FLAIR = frozenset({"t2f", "flair", "t2flair", "darkfluid"})
_SEGMENTATION = frozenset({"seg", "segmentation", "label", "labels", "tumor", "tumour"})
_EXTENSION = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


def canonical_sequence(name: str) -> str:
    """``"flair"`` -> ``"t2f"``, ``"t1ce"`` -> ``"t1c"``...; ``ValueError`` naming the accepted names."""
    key = str(name).strip().lower()
    if key not in ALIASES:
        accepted = ", ".join(f"{alias} ({SEQUENCE_LABELS[seq]})" for alias, seq in ALIASES.items())
        raise ValueError(f"unknown sequence {name!r}: use one of {accepted}")
    return ALIASES[key]


def _tokens(filename: str | os.PathLike) -> set[str]:
    stem = _EXTENSION.sub("", Path(filename).name).lower().replace("+", "")  # "T1+C" -> "t1c"
    return set(re.findall(r"[a-z0-9]+", stem))


def guess_sequence(filename: str | os.PathLike) -> str | None:
    """The sequence a file name suggests (one of :data:`SEQUENCES`), or ``None`` if it names none or several.

    Case-insensitive, on the name's tokens (split at ``_ - . +`` and spaces): t1c / t1ce /
    t1gd / post / gd -> ``"t1c"``; flair / t2f (also inside a token: ``3DFLAIR``) -> ``"t2f"``;
    t2 / t2w -> ``"t2w"``; t1 / t1n / t1w / pre / native -> ``"t1n"``. ``"T1_post"`` is T1c,
    ``"T2_FLAIR"`` is FLAIR; ``"t1_t2"``, ``"flair_post"`` or ``"t1_pre_post"`` are ambiguous.
    """
    tokens = _tokens(filename)
    contrast = bool(tokens & _CONTRAST)
    families = set()
    if tokens & _FLAIR or any("flair" in token for token in tokens):
        families.add("t2f")
    elif tokens & _T2:
        families.add("t2w")
    if contrast:
        families.add("t1c")
    if tokens & _PRE or (tokens & _T1 and not contrast):
        families.add("t1n")
    return families.pop() if len(families) == 1 else None


def guess_role(filename: str | os.PathLike) -> str | None:
    """:func:`guess_sequence`, else ``"seg"`` for a segmentation-like name (seg, label(s),
    segmentation, tumo(u)r), else ``None``: what a file's combo shows first."""
    sequence = guess_sequence(filename)
    if sequence is None and _tokens(filename) & _SEGMENTATION:
        return SEG
    return sequence


def assign_sequences(choices: Iterable[tuple[str | os.PathLike, str | None]]) -> dict[str, Path]:
    """``[(file, sequence or "seg" or None), ...]`` -> ``{sequence: file}`` in the given order.

    ``None`` leaves a file out. Two files for one sequence, or no sequence at all, raise
    :class:`BratsInputError` naming the files. The first file given is the reference
    grid (see :func:`napari_acs.io.load_case`).
    """
    assigned: dict[str, Path] = {}
    for path, sequence in choices:
        if sequence is None:
            continue
        key = SEG if sequence == SEG else canonical_sequence(sequence)
        if key in assigned:
            what = "segmentation" if key == SEG else SEQUENCE_LABELS[key]
            raise BratsInputError(Path(path), f"is assigned {what}, like {assigned[key].name}: keep one file per sequence")
        assigned[key] = Path(path)
    if not any(key != SEG for key in assigned):
        raise BratsInputError(None, "no sequence assigned: give at least one of T1, T1ce, T2, FLAIR")
    return assigned


def missing_sequences(files: Mapping[str, object]) -> tuple[str, ...]:
    """The :data:`SEQUENCES` that ``files`` (keyed by any accepted name) lacks, in channel order."""
    given = {canonical_sequence(key) for key in files if key != SEG}
    return tuple(seq for seq in SEQUENCES if seq not in given)


def sentence(text: str) -> str:
    """A clause such as :func:`missing_warning`'s, as a sentence: capitalised, with a full stop."""
    return f"{text[:1].upper()}{text[1:]}."


def missing_warning(missing: Iterable[str]) -> str:
    """The one-line warning wherever a case with missing sequences is loaded or segmented:
    ``"missing T1, T2: their input channels are zero-filled; ..."``."""
    names = [SEQUENCE_LABELS.get(ALIASES.get(m, m), m) for m in missing]
    channels = "its input channel is" if len(names) == 1 else "their input channels are"
    return (f"missing {', '.join(names)}: {channels} zero-filled, so the segmentation is less reliable "
            "than from all four sequences")
