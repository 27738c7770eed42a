"""``python -m ferroptim``: the demo (the project's main job), ``compare`` and ``bench``."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from ferroptim.bench import run as bench_run

#: import name -> distribution name of what the demo and ``compare`` need
DEMO_EXTRAS = {"sklearn": "scikit-learn", "matplotlib": "matplotlib"}


def missing_demo_extras() -> list[str]:
    """The demo extras that are not installed (checked before any training starts)."""
    return [dist for name, dist in DEMO_EXTRAS.items() if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferroptim", description="ferroptim tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="train a small CNN on scikit-learn's digits and report the held-out accuracy",
        description=(
            "Standardize, shuffle and augment the digits, train a small CNN with AdamW, a "
            "warm-up + cosine schedule and early stopping, print the held-out test accuracy, "
            "write the training curves as a PNG and time the optimizer steps (native vs NumPy)."
        ),
    )
    compare = sub.add_parser(
        "compare",
        help="the guide's claims measured on digits (optimizers, inits, batch norm, losses)",
        description=(
            "Train the same model and seed under each alternative the guide discusses and write "
            "one PNG figure plus a printed table."
        ),
    )
    bench = sub.add_parser(
        "bench",
        help="time native optimizer steps against the NumPy reference and the memory roofline",
        description=(
            "Time each optimizer's native step against the NumPy reference backend and the "
            "memory roofline on fixed workloads; print a markdown table."
        ),
    )
    bench_run.add_arguments(bench)
    # the demo and compare import scikit-learn and matplotlib only when they run
    from ferroptim.demo import compare as compare_cli
    from ferroptim.demo import demo as demo_cli

    demo_cli.add_arguments(demo)
    compare_cli.add_arguments(compare)
    args = parser.parse_args(argv)
    if args.command in ("demo", "compare"):
        missing = missing_demo_extras()
        if missing:
            print(
                f"python -m ferroptim {args.command} needs {' and '.join(missing)}: "
                "pip install 'ferroptim[demo]' (or pip install scikit-learn matplotlib tqdm)",
                file=sys.stderr,
            )
            return 1
    if args.command == "demo":
        return demo_cli.run_from_args(args)
    if args.command == "compare":
        return compare_cli.run_from_args(args)
    if args.command == "bench":
        return bench_run.run_from_args(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
