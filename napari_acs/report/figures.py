"""matplotlib figures without ``pyplot``: an Agg figure, and its atomic save as PNG or PDF.

``matplotlib.figure.Figure`` with a ``FigureCanvasAgg`` attached draws without a GUI, in
any thread, and changes no process-wide state (no ``matplotlib.use``, no global rcParams,
no figure manager). Files appear whole or not at all (:func:`napari_acs.io.files.atomic_path`).
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from napari_acs.io.files import WriteError, atomic_path, check_writable_file

#: File formats by suffix.
FORMATS = {".png": "png", ".pdf": "pdf"}


class ReportError(ValueError):
    """A figure or report cannot be written: names the file and the problem."""


def agg_figure(width_in: float, height_in: float, *, dpi: float = 100) -> Figure:
    """A white figure of ``width_in`` x ``height_in`` inches drawn by the Agg canvas."""
    figure = Figure(figsize=(width_in, height_in), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def figure_format(path: str | os.PathLike) -> str:
    """``"png"`` or ``"pdf"`` from the suffix of ``path``; :class:`ReportError` otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ReportError(f"{path}: unknown format {suffix or '(no suffix)'!r}; use .png or .pdf")
    return FORMATS[suffix]


def check_destination(path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Refuse what would fail only after the drawing: an unknown suffix, an existing file (unless
    ``overwrite``), a folder, a missing or read-only folder
    (:func:`napari_acs.io.files.check_writable_file`). Returns the format (``"png"``/``"pdf"``)."""
    fmt = figure_format(path)
    if Path(path).is_file() and not overwrite:
        raise ReportError(f"{path}: exists and was not replaced; pass --overwrite (overwrite=True) to replace it")
    try:
        check_writable_file(path, overwrite=overwrite)
    except (WriteError, FileExistsError) as exc:
        raise ReportError(str(exc)) from exc
    return fmt


def save_figure(figure: Figure, path: str | os.PathLike, *, overwrite: bool = False,
                metadata: dict[str, str] | None = None) -> Path:
    """Write ``figure`` as PNG or PDF (by suffix) at its own size and dpi, atomically.

    ``metadata`` (e.g. ``{"Title": ...}``) goes into the PNG text chunks or the PDF info.
    Raises :class:`ReportError` (unknown suffix, missing folder) or ``FileExistsError``.
    """
    fmt = check_destination(path, overwrite=overwrite)
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format=fmt, dpi=figure.dpi, facecolor=figure.get_facecolor(), metadata=metadata)
    return Path(path)


def check_uncertainty(score: float | None) -> None:
    """Refuse an uncertainty score outside [0, 1] (NaN included); ``None`` means not computed."""
    if score is not None and not 0.0 <= float(score) <= 1.0:
        raise ReportError(f"uncertainty score {score!r} is not in [0, 1] (0 = certain, 1 = least certain)")
