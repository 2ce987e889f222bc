"""``progopt``: a thin command line over the Python API. Each subcommand lives in ``optimizer/commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from optimizer.data import DataError
from optimizer.errors import UsageError
from optimizer.secrets import MaskingFilter, SecretDetector

COMMANDS = ["evaluate", "compile", "artifact", "prompt", "sweep"]  # modules under optimizer/commands


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors go through the CLI's error boundary (subparsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        option = re.match(r"argument (\S+?)(?:/\S+)?: (.*)", message, re.DOTALL)
        if option:
            raise UsageError(option[2], option[1])
        raise UsageError(message, f"{self.prog} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="progopt", description=__doc__)
    parser.add_argument("--cache-dir", help="DSPy response cache directory (default: ~/.cache/progopt/dspy)")
    parser.add_argument("--debug", action="store_true", help="on an error, also print the traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"optimizer.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"optimizer.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _log_to_stderr(detector: SecretDetector) -> logging.Handler:
    """Warnings and errors to stderr, secrets masked (the handler every progopt log record goes through)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MaskingFilter(detector))
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    return handler


def describe(exc: BaseException) -> str:
    """``<what>, <where>`` for a failure: the option or file at fault, else the exception's own words."""
    from optimizer.accounting import BudgetExhausted
    from optimizer.artifact.errors import ArtifactError

    if isinstance(exc, UsageError):
        return f"{exc.what}, {exc.where}"
    if isinstance(exc, DataError):
        where = exc.path + (f" line {exc.line}" if exc.line is not None else "")
        return f"{exc.message}, {where}" + (f" field {exc.field!r}" if exc.field else "")
    if isinstance(exc, ArtifactError):
        return f"{exc.message}, {exc.path} at {exc.json_path}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}, {exc.filename}"
    if isinstance(exc, BudgetExhausted):
        return f"{exc}, the compile's budget"
    from optimizer.sweep.config import SweepConfigError

    if isinstance(exc, SweepConfigError):  # "<file>:<line>: <key path>: <what>", on one line
        return " ".join(str(exc).split())
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{': ' + text if text else ''}, unexpected (--debug shows where)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every failure, argument errors included, prints one masked line
    ``progopt: <what>, <where>`` to stderr and returns 2 (``--debug`` adds the masked traceback)."""
    detector = SecretDetector()
    handler = _log_to_stderr(detector)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    try:
        args = build_parser().parse_args([a for a in argv if a != "--debug"])
        from optimizer import runtime

        runtime.configure(args.cache_dir)
        return args.func(args)
    except (Exception, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):  # --help
            return 0
        if debug:
            print(detector.mask(traceback.format_exc()), file=sys.stderr)
        what = str(exc.code) if isinstance(exc, SystemExit) else describe(exc)
        print(detector.mask(f"progopt: {what}"), file=sys.stderr)
        return 2
    finally:
        logging.getLogger().removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
