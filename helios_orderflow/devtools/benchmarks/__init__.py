"""Benchmarks for ``make bench``: one module per area, each with ``run(quick: bool) -> dict[str, float]``.

Figures are printed as ``name: value`` lines. They are shown, never asserted in tests: absolute times on
a shared 2-core machine are noisy, so quote medians and ratios measured in one run.
"""
