"""``progopt``: a thin command line over the Python API. Each subcommand lives in ``optimizer/commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from optimizer.data import DataError
from optimizer.secrets import MaskingFilter, SecretDetector

COMMANDS = ["evaluate", "compile", "artifact", "sweep"]  # modules under optimizer/commands


def _mapping(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep:
            raise SystemExit(f"--map expects FIELD=COLUMN, got {pair!r}")
        out[field] = column
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="progopt", description=__doc__)
    parser.add_argument("--cache-dir", help="DSPy response cache directory (default: ~/.cache/progopt/dspy)")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from optimizer import runtime

    runtime.configure(args.cache_dir)
    detector = SecretDetector()
    handler = _log_to_stderr(detector)
    try:
        return args.func(args)
    except DataError as exc:
        print(detector.mask(f"progopt: data error: {exc}"), file=sys.stderr)
        return 2
    except (ImportError, ValueError, KeyError) as exc:
        print(detector.mask(f"progopt: {exc}"), file=sys.stderr)
        return 2
    finally:
        logging.getLogger().removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
