"""What every napari-acs command line shares: one-line errors, a progress bar, tables, dispatch.

Used by ``napari-acs`` (:mod:`napari_acs.cli`) and by the module entry points that
``torchrun`` and scripts launch (``python -m napari_acs.training``); it sits below every
layer, so each of them can use it without importing the ``napari-acs`` front end.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import sys
from collections.abc import Callable, Sequence


#: The sequence flags of ``segment`` and ``prepare``: (flag, alias, sequence key, what the file holds).
SEQUENCE_FLAGS = (("--t1c", "--t1ce", "t1c", "post-contrast T1"), ("--flair", "--t2f", "t2f", "T2-FLAIR"),
                  ("--t1n", "--t1", "t1n", "native (pre-contrast) T1"), ("--t2w", "--t2", "t2w", "T2"))


#: glibc's ``mallopt`` parameters: the size above which blocks are mapped (freed at once),
#: how many blocks may be mapped, how much free memory at the heap's top is kept.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
#: The fixed threshold a cohort command sets (bytes).
MMAP_THRESHOLD_BYTES = 1 << 20
#: Free memory a training process keeps at the heap's top (bytes).
KEPT_FOR_REUSE_BYTES = 1 << 30


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory_for_reuse() -> bool:
    """Have glibc serve every block from its heap and keep what is freed (a training command
    line only, never a napari process); returns whether it was set (False without glibc).

    By default each activation above the mmap threshold (most of a 3D network's) is mapped
    fresh and zeroed by the kernel at every step, then returned; a training step allocates
    the same sizes every time, so memory kept and reused costs no more than one step's peak
    and saves that zeroing (benchmarks/RESULTS.md, "Training step").
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_MMAP_MAX, 0)
                and libc.mallopt(M_TRIM_THRESHOLD, KEPT_FOR_REUSE_BYTES))


def return_freed_memory_promptly() -> bool:
    """Fix glibc's mmap threshold at 1 MiB for this process (a command-line process only,
    never a napari one); returns whether it was set (False where the C library is not glibc).

    glibc raises the threshold each time a large block is freed (up to 32 MiB), so the
    arrays of each case below it come from the heap, which keeps what they free: a cohort
    command then grows case by case. With a fixed threshold those blocks are mapped and
    returned when freed, and memory stays flat (benchmarks/RESULTS.md, "Cohort").
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


class CLIError(Exception):
    """A failure to report in one line, without a traceback (exit code 1)."""


class ProgressBar:
    """``progress(fraction, message)`` drawn as a tqdm bar on stderr (or silent)."""

    def __init__(self, enabled: bool, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=desc, disable=not enabled, leave=True,
                         bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        self._bar.n = int(fraction * 1000)
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def print_table(rows: list[list[str]], header: list[str]) -> None:
    """Print ``rows`` under ``header`` in left-aligned columns, with a rule below the header."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())


def os_error_line(exc: OSError) -> str:
    """An ``OSError`` in one line naming the path and the OS reason: ``"PATH: No space left on
    device"`` (our own messages, e.g. ``"cannot write PATH: ..."``, as they are)."""
    if type(exc).__str__ is not OSError.__str__ or exc.strerror is None:
        return str(exc)
    if exc.filename is None:
        return exc.strerror
    target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{exc.filename}{target}: {exc.strerror}"


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str) -> int:
    """``handler(args)``'s exit code; a :class:`CLIError` is printed as ``<prog>: error: ...`` (1),
    so is an ``OSError`` (a read-only or full disk: the path and the OS reason, 1), Ctrl-C as
    ``<prog>: interrupted`` (130)."""
    try:
        return handler(args)
    except CLIError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def module_main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    handler: Callable[[argparse.Namespace], int],
) -> int:
    """The ``main`` of a ``python -m napari_acs.<package>`` entry point (what ``torchrun`` launches):
    parse ``argv`` with the flags ``add_arguments`` declares, then :func:`run_handler`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    return run_handler(handler, parser.parse_args(argv), prog.removeprefix("python -m "))
