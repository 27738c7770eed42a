"""``python -m ferroptim``: command-line tools (currently ``bench``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ferroptim.bench.run import add_arguments, run_from_args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferroptim", description="ferroptim tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser(
        "bench",
        help="time native optimizer steps against the NumPy reference and the memory roofline",
        description=(
            "Time each optimizer's native step against the NumPy reference backend and the "
            "memory roofline on fixed workloads; print a markdown table."
        ),
    )
    add_arguments(bench)
    args = parser.parse_args(argv)
    if args.command == "bench":
        return run_from_args(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
