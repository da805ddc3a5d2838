"""Command line: ``pymegalmm demo`` and ``pymegalmm config`` (also ``python -m pymegalmm ...``)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pymegalmm`` command and of ``python -m pymegalmm``."""
    parser = argparse.ArgumentParser(prog="pymegalmm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit a simulated multi-environment trial and compare "
                                       "prediction accuracy with univariate GBLUP")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sub.add_parser("config", help="show the build configuration (OpenMP, threads, BLAS)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        demo_main(progress=not args.no_progress)
    else:
        from ._config import show_config

        show_config()
    return 0
