"""`freqseg` command line: one sub-command per job, thin over the core functions."""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import pkgutil
import sys
import threading
from collections.abc import Sequence

from .. import __version__
from ..errors import FreqsegError
from ..io.guard import refuse_output_over_input


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
    for command in sub.choices.values():  # `freqseg segment ... --debug` works as well as `freqseg --debug segment ...`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    return parser


#: argument names that hold paths a command writes; every other path argument is an input.
OUTPUT_ARGS = frozenset({"output", "out", "uncertainty"})


def path_arguments(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(output paths, other path-like values) among the parsed arguments."""
    outputs, others = [], []
    for name, value in vars(args).items():
        if name in ("func", "command") or value is None:
            continue
        values = value if isinstance(value, list) else [value]
        strings = [str(v) for v in values if isinstance(v, str | os.PathLike)]
        (outputs if name in OUTPUT_ARGS else others).extend(strings)
    return outputs, others


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit code 0 on success, 1 on a user-facing error, 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        refuse_output_over_input(*path_arguments(args))
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


def entry() -> None:
    """The `freqseg` executable: `main`, then every exit handler, then leave without tearing down
    torch's modules (half a second per call spent on nothing once all output is flushed and closed)."""
    rc = main()
    if threading.active_count() > 1:  # a worker thread still runs: let the interpreter wait for it
        sys.exit(rc)
    atexit._run_exitfuncs()  # temporary folders, logging, child processes: as at a normal exit
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (`freqseg models | head`): nothing more can be said
        pass
    os._exit(rc)


if __name__ == "__main__":
    entry()
