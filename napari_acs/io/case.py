"""BraTS case discovery and loading: NIfTI files -> validated canonical (RAS+) arrays.

File names (``.nii`` or ``.nii.gz``):

* BraTS 2021: ``<id>_t1``, ``<id>_t1ce``, ``<id>_t2``, ``<id>_flair``, ``<id>_seg``
* BraTS 2023+: ``<id>-t1n``, ``<id>-t1c``, ``<id>-t2w``, ``<id>-t2f``, ``<id>-seg``

Files with any other names are a case when the user says which sequence each one is:
``load_case(files={"t1c": "post_gd.nii.gz", "flair": "ax_flair.nii", ...})`` (keys:
either naming, see :mod:`napari_acs.io.sequences`); sequences may then be missing
(``case.missing``; their channels are zero-filled), and all files must share one grid.

The naming decides the label convention (``"brats2021"`` or ``"brats2023"``, see
:mod:`napari_acs.io.labels`). The image channels are always in the order
(t1, t1ce, t2, flair) == (t1n, t1c, t2w, t2f). Voxel data are only re-ordered
(axis permutations and flips to RAS+), never resampled, so every result maps back
exactly onto the source grid with :class:`SourceGeometry`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from napari_acs.io.errors import BratsInputError
from napari_acs.io.labels import CONVENTIONS, Convention, unknown_label_values
from napari_acs.io.nifti import READ_ERRORS, is_nifti_name, nifti_stem, open_nifti
from napari_acs.io.sequences import SEQUENCES, canonical_sequence

#: Modality names per naming convention, in image channel order.
MODALITIES: dict[str, tuple[str, str, str, str]] = {
    "brats2021": ("t1", "t1ce", "t2", "flair"),
    "brats2023": ("t1n", "t1c", "t2w", "t2f"),
}
SEG = "seg"
#: Separator between case id and modality in each naming convention.
SEPARATORS: dict[str, str] = {"brats2021": "_", "brats2023": "-"}
#: Largest difference (mm, any affine entry) tolerated between the files of one case.
AFFINE_TOLERANCE_MM = 1e-3

_NAME = re.compile(
    r"^(?P<case_id>.+?)(?:_(?P<brats2021>t1|t1ce|t2|flair|seg)|-(?P<brats2023>t1n|t1c|t2w|t2f|seg))"
    r"\.nii(?:\.gz)?$"
)
#: The one preparation step files of several grids need (not done here), named in the refusal.
GRID_HINT = ("the sequences must share one grid: co-register and resample them onto the reference "
             "(first given) file first, a preparation step")
_NAMING_HINT = "files named like <id>_t1.nii.gz (BraTS 2021) or <id>-t1n.nii.gz (BraTS 2023)"
_RAS = axcodes2ornt(("R", "A", "S"))
# What gzip/zlib raise on damaged .gz files, and nibabel on unreadable or truncated NIfTI files.


@dataclass(frozen=True)
class BratsName:
    """A parsed BraTS file name: ``case_id``, ``convention`` and ``kind`` (a modality or ``"seg"``)."""

    case_id: str
    convention: Convention
    kind: str

    @property
    def slot(self) -> int:
        """Channel index 0-3 of a modality (the same in both conventions); 4 for ``seg``."""
        return 4 if self.kind == SEG else MODALITIES[self.convention].index(self.kind)


def parse_name(name: str) -> BratsName | None:
    """Parse a BraTS file name (``"x_t1ce.nii.gz"``, ``"x-t2f.nii"``); ``None`` if it is not one."""
    match = _NAME.match(name)
    if match is None:
        return None
    convention = "brats2021" if match["brats2021"] else "brats2023"
    return BratsName(match["case_id"], convention, match[convention])


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case: ``files`` maps modality names (then ``"seg"``, if present) to paths.

    ``reference`` is the modality whose grid every file must share: ``None`` for BraTS-named
    files (the first modality, all four present); for files assigned by the user
    (:func:`assigned_case_files`), the first one given, and modalities may be missing.
    """

    case_id: str
    convention: Convention
    files: dict[str, Path]
    reference: str | None = None

    @property
    def modalities(self) -> tuple[str, str, str, str]:
        return MODALITIES[self.convention]

    @property
    def reference_kind(self) -> str:
        """The modality whose file's grid is the case's grid."""
        return self.reference or self.modalities[0]

    @property
    def missing(self) -> tuple[str, ...]:
        """Modalities without a file, in channel order (always empty for BraTS-named files)."""
        return tuple(m for m in self.modalities if m not in self.files)


@dataclass(frozen=True, eq=False)
class SourceGeometry:
    """The voxel grid of the source files: what is needed to write results back onto it.

    ``affine`` (4, 4) maps source voxel indices to world mm; ``shape`` is the source
    (X, Y, Z); ``header`` is the source NIfTI header (qform/sform codes, pixdim,
    xyzt_units) used as the template when writing; ``ornt`` is nibabel's orientation
    (3, 2) from source axes to RAS+ axes.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    header: nib.Nifti1Header
    ornt: np.ndarray

    @property
    def canonical_affine(self) -> np.ndarray:
        """(4, 4) voxel -> world mm of the canonical (RAS+) arrays."""
        return self.affine @ inv_ornt_aff(self.ornt, self.shape)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        return tuple(int(self.shape[int(axis)]) for axis in np.argsort(self.ornt[:, 0]))

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """Source-grid array, spatial axes first ``(X, Y, Z, ...)`` -> canonical RAS+ view."""
        return apply_orientation(array, self.ornt)

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """Canonical array, spatial axes first ``(X, Y, Z, ...)`` -> view on the source grid."""
        return apply_orientation(array, ornt_transform(_RAS, self.ornt))


@dataclass(frozen=True, eq=False)
class BratsCase:
    """One BraTS case in canonical RAS+ orientation.

    ``image`` float32 (4, X, Y, Z), channels ``modalities`` (t1, t1ce, t2, flair order);
    ``affine`` (4, 4) canonical voxel -> world mm; ``label`` uint8 (X, Y, Z) in the file's
    label values (``convention``), or ``None`` without a seg file; ``files`` maps
    modality names and ``"seg"`` to the paths read; ``source`` is the source grid;
    ``warnings`` what was left out (a reference segmentation that could not be used);
    ``missing`` the modalities without a file (their channels are all zero: only for files
    assigned by the user, see :func:`assigned_case_files`).
    """

    image: np.ndarray
    modalities: tuple[str, ...]
    affine: np.ndarray
    case_id: str
    convention: Convention
    files: dict[str, Path]
    source: SourceGeometry
    label: np.ndarray | None = None
    warnings: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        """Canonical spatial shape (X, Y, Z)."""
        return tuple(self.image.shape[1:])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical axes."""
        return tuple(float(s) for s in voxel_sizes(self.affine))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0


# --------------------------------------------------------------------------- discovery


CaseSource = str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike]


def find_case_files(path_or_files: CaseSource) -> CaseFiles:
    """Resolve a case folder, one file of a case (its siblings are found), a list of files,
    or files assigned by the user ``{sequence: file}`` (see :func:`assigned_case_files`)."""
    if isinstance(path_or_files, Mapping):
        return assigned_case_files(path_or_files)
    if isinstance(path_or_files, (str, os.PathLike)):
        path = Path(path_or_files)
        if path.is_dir():
            return _case_from_folder(path)
        if not path.exists():
            raise BratsInputError(path, "no such file or folder")
        return _case_from_file(path)
    paths = [Path(p) for p in path_or_files]
    if not paths:
        raise BratsInputError(None, "no files given")
    named = []
    for path in paths:
        if not path.is_file():
            raise BratsInputError(path, "no such file")
        named.append((path, _parse_or_raise(path)))
    ids = sorted({name.case_id for _, name in named})
    if len(ids) > 1:
        raise BratsInputError(
            paths[0].parent, f"the files belong to {len(ids)} cases ({', '.join(ids)}), not one"
        )
    return _assemble(named, paths[0].parent)


def assigned_case_files(
    files: Mapping[str, str | os.PathLike], *, convention: Convention = "brats2023", case_id: str | None = None
) -> CaseFiles:
    """A case from files with any names, each assigned its sequence: ``{"t1c": path, ...}``.

    Keys: a sequence in either BraTS naming (t1n/t1, t1c/t1ce, t2w/t2, t2f/flair) or
    ``"seg"``; at least one sequence; missing ones are allowed (:attr:`CaseFiles.missing`).
    The first sequence given is the reference grid. ``convention`` names the modalities and
    the label values written (default BraTS 2023: labels 1, 2, 3); ``case_id`` defaults to
    the reference file's name without ``.nii.gz``. Raises :class:`BratsInputError` naming the
    file: unknown sequence, one sequence or one file given twice, no such file, not NIfTI.
    """
    if not files:
        raise BratsInputError(None, "no files given")
    modalities = MODALITIES[convention]
    chosen: dict[str, Path] = {}
    for key, value in files.items():
        path = Path(value)
        if key == SEG:
            kind = SEG
        else:
            try:
                kind = modalities[SEQUENCES.index(canonical_sequence(key))]
            except ValueError as exc:
                raise BratsInputError(path, str(exc)) from None
        if kind in chosen:
            raise BratsInputError(path, f"a second file for {kind} (the first: {chosen[kind].name}); keep one")
        for other, known in chosen.items():
            if known == path:
                raise BratsInputError(path, f"is given for both {other} and {kind}; one file is one sequence")
        if not path.is_file():
            raise BratsInputError(path, "no such file")
        if not is_nifti_name(path):
            raise BratsInputError(path, "not a NIfTI file name: expected .nii or .nii.gz")
        chosen[kind] = path
    given = [kind for kind in chosen if kind != SEG]
    if not given:
        raise BratsInputError(next(iter(chosen.values())), "only a segmentation given: assign at least one sequence")
    ordered = {m: chosen[m] for m in modalities if m in chosen}
    if SEG in chosen:
        ordered[SEG] = chosen[SEG]
    return CaseFiles(case_id or nifti_stem(chosen[given[0]]), convention, ordered, reference=given[0])


def find_cases(root: str | os.PathLike) -> list[Path]:
    """Sorted case folders under a cohort ``root`` (``[root]`` if it is itself a case folder).

    A case folder holds at least one BraTS-named modality file; symlinked folders are
    followed, hidden ones skipped (:func:`walk_folders`). Raises
    :class:`BratsInputError` if ``root`` is not a folder or holds no case.
    """
    root = Path(root)
    if not root.is_dir():
        raise BratsInputError(root, "no such folder")
    cases = []
    for folder, subfolders, names in walk_folders(root):
        if any(_is_modality_name(n) for n in names):
            cases.append(folder)
            subfolders.clear()
    if not cases:
        raise BratsInputError(root, f"no BraTS case found: a case folder holds {_NAMING_HINT}")
    return sorted(cases)


def walk_folders(root: str | os.PathLike) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk(root)`` (top down: clear the subfolder list to prune) that follows symlinked
    folders (a cohort assembled from links), visits each real folder once (no link loops) and
    skips hidden folders (``.git``, the temporary folders of :mod:`napari_acs.io.files`)."""
    seen: set[str] = set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        real = os.path.realpath(folder)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        yield Path(folder), subfolders, sorted(names)


def _is_modality_name(name: str) -> bool:
    parsed = parse_name(name)
    return parsed is not None and parsed.kind != SEG


def _parse_or_raise(path: Path) -> BratsName:
    parsed = parse_name(path.name)
    if parsed is None:
        raise BratsInputError(path, f"not a BraTS file name: expected {_NAMING_HINT}")
    return parsed


def _brats_files(folder: Path) -> list[tuple[Path, BratsName]]:
    return sorted((p, n) for p in folder.iterdir() if (n := parse_name(p.name)) is not None and p.is_file())


def _without_derived(named: list[tuple[Path, BratsName]]) -> list[tuple[Path, BratsName]]:
    """The files of the cases in a folder, without segmentations derived from them.

    A case is an id with at least one modality file. A segmentation of an id that has none,
    such as ``edited_seg.nii.gz`` or ``<id>_corrected_seg.nii.gz`` saved beside the case, is a
    derivative, not another case (nor the reference, which is named exactly ``<id>_seg``).
    Files the case reader never parses (``<id>_prediction``, ``<id>_uncertainty``,
    ``<id>_probabilities``, ``<id>_seg_napari-acs``...) do not get here at all. A folder of
    segmentations only is kept as it is (its refusal names them).
    """
    cases = {name.case_id for _, name in named if name.kind != SEG}
    return [(path, name) for path, name in named if name.case_id in cases] if cases else named


def _case_from_folder(folder: Path) -> CaseFiles:
    named = _without_derived(_brats_files(folder))
    if not named:
        sub_cases = [d for d in folder.iterdir() if d.is_dir() and any(map(_is_modality_name, os.listdir(d)))]
        hint = f"; it holds {len(sub_cases)} case folders (find_cases lists them)" if sub_cases else ""
        raise BratsInputError(folder, f"not a BraTS case folder: no {_NAMING_HINT}{hint}")
    ids = sorted({name.case_id for _, name in named})
    if len(ids) > 1:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise BratsInputError(
            folder,
            f"holds files of {len(ids)} cases ({shown}): open one of their files, or give each case its own folder",
        )
    return _assemble(named, folder)


def _case_from_file(path: Path) -> CaseFiles:
    case_id = _parse_or_raise(path).case_id
    return _assemble([(p, n) for p, n in _brats_files(path.parent) if n.case_id == case_id], path.parent)


def _assemble(named: list[tuple[Path, BratsName]], folder: Path) -> CaseFiles:
    """Check one file per slot, one naming convention, all four modalities; order the files."""
    by_slot: dict[int, list[tuple[Path, BratsName]]] = {}
    for path, name in named:
        by_slot.setdefault(name.slot, []).append((path, name))
    for entries in by_slot.values():
        if len(entries) > 1:
            kinds = "/".join(sorted({n.kind for _, n in entries}))
            files = ", ".join(p.name for p, _ in entries)
            raise BratsInputError(folder, f"{len(entries)} files for {kinds}: {files}; keep one")
    conventions = {name.convention: path for path, name in named}
    if len(conventions) > 1:
        raise BratsInputError(
            folder,
            f"mixes BraTS 2021 names ({conventions['brats2021'].name}) and BraTS 2023 names "
            f"({conventions['brats2023'].name}); use one naming for all files of a case",
        )
    case_id, convention = named[0][1].case_id, named[0][1].convention
    modalities = MODALITIES[convention]
    missing = [modalities[slot] for slot in range(4) if slot not in by_slot]
    if missing:
        expected = ", ".join(f"{case_id}{SEPARATORS[convention]}{m}.nii.gz" for m in missing)
        raise BratsInputError(folder, f"missing modality {', '.join(missing)} (expected file {expected})")
    files = {modalities[slot]: by_slot[slot][0][0] for slot in range(4)}
    if 4 in by_slot:
        files[SEG] = by_slot[4][0][0]
    return CaseFiles(case_id, convention, files)


# --------------------------------------------------------------------------- loading


def load_case(
    path_or_files: CaseSource | None = None,
    *,
    files: Mapping[str, str | os.PathLike] | None = None,
    convention: Convention = "brats2023",
    case_id: str | None = None,
    threads: int | None = None,
    on_bad_label: Literal["raise", "warn"] = "raise",
) -> BratsCase:
    """Load and validate a BraTS case: a folder, one of its files, or a list of its files;
    or files with any names assigned their sequences, ``files={"t1c": path, "flair": path}``
    (also accepted as ``path_or_files``; ``convention`` and ``case_id`` apply to these only,
    see :func:`assigned_case_files`). A sequence without a file is listed in ``missing`` and
    its channel is all zero (a segmentation is then less reliable:
    :func:`napari_acs.io.sequences.missing_warning` says so); every file must lie on the
    reference (first given) file's grid, else the refusal names both files and the
    preparation step needed.

    Returns a :class:`BratsCase` in canonical RAS+ orientation (reoriented, never
    resampled). NIfTI scaling (scl_slope/scl_inter) is applied. A file holding a 4D
    volume with a single trailing volume (X, Y, Z, 1) is read as 3D. Any problem
    raises :class:`BratsInputError` naming the file; nothing partial is returned.
    ``on_bad_label="warn"`` (for callers that do not need the reference, e.g. segmenting)
    leaves out a segmentation file that cannot be used (unreadable, another grid, unknown
    label values): ``label`` is then ``None`` and ``warnings`` says why.
    The files are read by ``threads`` threads (default: one per file, at most one per
    CPU; zlib decompression releases the GIL); ``threads=1`` suits data-loader
    worker processes that are already parallel.
    """
    if files is not None and path_or_files is not None:
        raise TypeError("load_case takes a path (or files) or files={sequence: file}, not both")
    source_files = files if files is not None else path_or_files
    if isinstance(source_files, Mapping):
        case_files = assigned_case_files(source_files, convention=convention, case_id=case_id)
    else:
        case_files = find_case_files(source_files)
    modalities = case_files.modalities
    present = [kind for kind in modalities if kind in case_files.files]
    reference = case_files.reference_kind
    label: np.ndarray | None = None
    warnings: tuple[str, ...] = ()
    with ThreadPoolExecutor(max_workers=threads or min(len(case_files.files), _usable_cpus())) as pool:
        opening = {kind: pool.submit(_open, path) for kind, path in case_files.files.items()}
        opened = {kind: opening[kind].result() for kind in present}  # the first error in file order
        source = _common_geometry(opened, case_files)
        image = (np.zeros if case_files.missing else np.empty)((4, *source.canonical_shape), dtype=np.float32)
        reads = [
            pool.submit(_read_modality, opened[kind][0], case_files.files[kind], source, image[channel])
            for channel, kind in enumerate(modalities) if kind in opened
        ]
        label_read = None
        if SEG in opening:
            try:
                seg_img, seg_shape = opening[SEG].result()
                _check_grid(case_files.files[SEG], seg_img, seg_shape, case_files.files[reference],
                            opened[reference])
                label_read = pool.submit(_read_label, seg_img, case_files.files[SEG], source, case_files.convention)
            except BratsInputError as exc:
                if on_bad_label == "raise":
                    raise
                warnings = (f"{exc}; the reference segmentation is not used",)
        for read in reads:
            read.result()
        if label_read is not None:
            try:
                label = label_read.result()
            except BratsInputError as exc:
                if on_bad_label == "raise":
                    raise
                warnings = (f"{exc}; the reference segmentation is not used",)
    return BratsCase(
        image=image,
        modalities=modalities,
        affine=source.canonical_affine,
        case_id=case_files.case_id,
        convention=case_files.convention,
        files=case_files.files,
        source=source,
        label=label,
        warnings=warnings,
        missing=case_files.missing,
    )


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _common_geometry(
    opened: dict[str, tuple[nib.Nifti1Image, tuple[int, int, int]]], case_files: CaseFiles
) -> SourceGeometry:
    """Check that every modality has the reference modality's shape and affine; return that grid."""
    ref_kind = case_files.reference_kind
    ref_img, ref_shape = opened[ref_kind]
    for kind, (img, shape) in opened.items():
        try:
            _check_grid(case_files.files[kind], img, shape, case_files.files[ref_kind], opened[ref_kind])
        except BratsInputError as exc:
            if case_files.reference is None:  # BraTS-named files come prepared: a broken case
                raise
            raise BratsInputError(exc.path, f"{exc.problem}; {GRID_HINT}") from None
    return SourceGeometry(
        affine=ref_img.affine.copy(),
        shape=ref_shape,
        header=ref_img.header.copy(),
        ornt=io_orientation(ref_img.affine),
    )


def _check_grid(path: Path, img: nib.Nifti1Image, shape: tuple[int, int, int], ref_path: Path,
                ref: tuple[nib.Nifti1Image, tuple[int, int, int]]) -> None:
    """``path``'s grid (shape, affine) must be ``ref_path``'s, else :class:`BratsInputError`."""
    ref_img, ref_shape = ref
    if shape != ref_shape:
        raise BratsInputError(path, f"shape {shape} differs from {ref_path.name} shape {ref_shape}")
    diff = float(np.abs(img.affine - ref_img.affine).max())
    if not diff <= AFFINE_TOLERANCE_MM:
        raise BratsInputError(
            path,
            f"affine differs from the affine of {ref_path.name} by {diff:.4g} mm "
            f"(tolerance {AFFINE_TOLERANCE_MM} mm): "
            f"{affine_difference(img.affine, ref_img.affine, (path.name, ref_path.name))}",
        )


def affine_difference(affine: np.ndarray, other: np.ndarray, names: tuple[str, str] = ("this", "that")) -> str:
    """The two (4, 4) voxel -> world mm affines in one line, naming what differs: the origin
    only (``"origin (x, y, z) vs (x, y, z) mm"``) or the 3 x 4 matrices (rows ``;``-separated)."""
    def number(value: float) -> str:  # 0.1 um steps: any difference above the tolerance shows
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text

    def numbers(values: np.ndarray) -> str:
        return " ".join(number(v) for v in np.asarray(values, dtype=float).ravel())

    def matrix(a: np.ndarray) -> str:
        return "[" + "; ".join(numbers(row) for row in np.asarray(a, dtype=float)[:3]) + "]"

    if np.allclose(affine[:3, :3], other[:3, :3], atol=AFFINE_TOLERANCE_MM):
        return (f"origin ({numbers(affine[:3, 3]).replace(' ', ', ')}) mm in {names[0]} vs "
                f"({numbers(other[:3, 3]).replace(' ', ', ')}) mm in {names[1]}")
    return f"{names[0]} {matrix(affine)} vs {names[1]} {matrix(other)}"


def _open(path: Path) -> tuple[nib.Nifti1Image, tuple[int, int, int]]:
    """A NIfTI file read safely (:func:`napari_acs.io.nifti.open_nifti`: header checked first)."""
    return open_nifti(path)


def read_voxels(img: nib.Nifti1Image, path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Unscaled source-grid voxels ``shape`` ((X, Y, Z), or (X, Y, Z, T) of a 4D file) in the
    file's own dtype, read once; a read error is a :class:`BratsInputError` naming the file."""
    try:
        raw = np.asarray(img.dataobj.get_unscaled())
    except READ_ERRORS as exc:
        raise BratsInputError(
            path, f"voxel data cannot be read: corrupt or truncated file ({type(exc).__name__}: {exc})"
        ) from exc
    return raw.reshape(shape)


def _read_modality(img: nib.Nifti1Image, path: Path, source: SourceGeometry, out: np.ndarray) -> None:
    """Fill ``out`` (canonical (X, Y, Z) float32) with the scaled voxels of one modality."""
    np.copyto(out, source.to_canonical(read_voxels(img, path, source.shape)), casting="unsafe")
    slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
    if slope != 1.0:
        out *= np.float32(slope)
    if inter != 0.0:
        out += np.float32(inter)
    low, high = out.min(), out.max()  # NaN propagates through min/max
    if not (np.isfinite(low) and np.isfinite(high)):
        n_nan, n_inf = int(np.isnan(out).sum()), int(np.isinf(out).sum())
        raise BratsInputError(path, f"has {n_nan} NaN and {n_inf} infinite voxels")
    if low == high:
        what = "all-zero (empty volume)" if low == 0 else f"constant (every voxel is {low:g})"
        raise BratsInputError(path, f"is {what}")


def _read_label(
    img: nib.Nifti1Image, path: Path, source: SourceGeometry, convention: Convention
) -> np.ndarray:
    """Canonical uint8 (X, Y, Z) label map, values checked against ``convention``."""
    values = label_values(img, path, source.shape, convention)
    return np.array(source.to_canonical(values), dtype=np.uint8, order="C")


def label_values(img: nib.Nifti1Image, path: Path, shape: tuple[int, int, int], convention: Convention
                 ) -> np.ndarray:
    """A segmentation's voxels on its own grid (X, Y, Z), as uint8, checked: finite integers
    of ``convention`` only (NaN, 1.5, 5 or -1 are refused, naming the file and the values)."""
    values = read_voxels(img, path, shape)
    slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
    if slope != 1.0 or inter != 0.0:
        values = values * slope + inter
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise BratsInputError(path, "has NaN or infinite values in a segmentation")
        fractional = values != np.rint(values)
        if fractional.any():
            examples = ", ".join(f"{v:g}" for v in np.unique(values[fractional])[:5])
            raise BratsInputError(
                path, f"has non-integer label values ({examples}); a segmentation holds integers"
            )
    unknown = unknown_label_values(values, convention)
    if unknown:
        allowed = sorted(CONVENTIONS[convention].allowed)
        shown = ", ".join(f"{v:g}" for v in unknown[:10])
        problem = f"has label values {shown} unknown to the {convention} convention (allowed {allowed})"
        for other in CONVENTIONS:
            if other != convention and not unknown_label_values(values, other):
                problem += f"; they fit the {other} convention, whose files are named <id>{SEPARATORS[other]}seg.nii.gz"
        raise BratsInputError(path, problem)
    return values.astype(np.uint8)

