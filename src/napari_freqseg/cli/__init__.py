"""`freqseg` command line: one sub-command per job, thin over the core functions."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import FreqsegError


def command_modules() -> list[str]:
    """Sub-command modules of this package (names without a leading underscore), sorted.

    Each defines `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
    """
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freqseg",
        description="Semi-supervised 3D segmentation across centres: inspect, augment, segment, train.",
    )
    parser.add_argument("--version", action="version", version=f"freqseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        importlib.import_module(f".{name}", __name__).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit code 0 on success, 1 on a user-facing error, 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FreqsegError as exc:
        if args.debug:
            raise
        print(f"freqseg {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"freqseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        if args.debug:
            raise
        print(f"freqseg {args.command}: error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
