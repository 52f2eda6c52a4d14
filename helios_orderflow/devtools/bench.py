"""``make bench``: run every benchmark module and print ``name: value`` lines.

``python -m helios_orderflow.devtools.bench [--quick] [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

from . import benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helios-bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark modules to run (default: all)")
    args = parser.parse_args(argv)
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__))
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"unknown benchmark(s) {sorted(unknown)}; available: {names}")
        names = [n for n in names if n in args.only]
    for name in names:
        module = importlib.import_module(f"{benchmarks.__name__}.{name}")
        t0 = time.perf_counter()
        results = module.run(quick=args.quick)
        for key, value in results.items():
            if isinstance(value, float):
                print(f"{key}: {value:.6g}", flush=True)
            else:
                print(f"{key}: {value}", flush=True)
        print(f"# {name} took {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
