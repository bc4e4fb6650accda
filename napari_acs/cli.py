"""The ``napari-acs`` command line: a thin argparse front end over the backend.

Each subcommand parses its flags and calls one backend function; heavy imports
(torch, napari) happen inside the handlers so ``napari-acs --help`` is instant.
Exit codes: 0 success, 1 a failure reported to the user, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


class CLIError(Exception):
    """A failure to report in one line, without a traceback (exit code 1)."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from napari_acs.demo import run_demo

    return run_demo(headless=args.headless)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand that exists."""
    parser = argparse.ArgumentParser(
        prog="napari-acs",
        description="ACS convolutions for brain-tumour MRI: segment, evaluate, fine-tune, compare.",
    )
    from napari_acs import __version__

    parser.add_argument("--version", action="version", version=f"napari-acs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="open napari with a sample case and the plugin's widgets (headless without a display)",
        description="Open napari with a sample BraTS-like case, the plugin's widgets docked and an "
        "ACS model ready to segment. Without a display (or with --headless) segment the sample "
        "case and print Dice, volumes and time.",
    )
    demo.add_argument("--headless", action="store_true", help="never open a window")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-acs`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except CLIError as exc:
        print(f"napari-acs {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"napari-acs {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
