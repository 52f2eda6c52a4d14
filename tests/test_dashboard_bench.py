"""The page benchmark's arithmetic without a browser: the "flat" verdict on the page's non-code heap and the split
of a heap snapshot into V8's code and the rest (helios_orderflow/devtools/benchmarks/page.py)."""

from __future__ import annotations

import json

import pytest

from helios_orderflow.devtools.benchmarks.page import FLAT_MB_PER_H, code_figures, flat_verdict


def test_flat_verdict_uses_only_the_second_half_of_the_run() -> None:
    # +0.5 MB in the first half (logs filling to their cap), then level: flat
    readings = [(600, 8.30), (1200, 8.60), (1800, 8.80), (2400, 8.81), (3000, 8.81), (3600, 8.80)]
    slope, flat = flat_verdict(readings, 3600)
    assert slope == pytest.approx(0.0, abs=1e-9)  # 8.80, 8.81, 8.81, 8.80 at 30 .. 60 min
    assert flat


def test_flat_verdict_rejects_a_steady_growth_above_the_threshold() -> None:
    per_h = FLAT_MB_PER_H * 3
    readings = [(s, 8.0 + per_h * s / 3600) for s in range(600, 3601, 300)]
    slope, flat = flat_verdict(readings, 3600)
    assert slope == pytest.approx(per_h)
    assert not flat


def test_flat_verdict_takes_the_last_two_readings_when_the_second_half_has_one() -> None:
    slope, flat = flat_verdict([(400, 8.0), (1000, 8.1), (1200, 8.2)], 1200)
    assert slope == pytest.approx(0.1 / (200 / 3600))
    assert not flat
    with pytest.raises(ValueError):
        flat_verdict([(600, 8.0)], 600)


def test_code_figures_count_code_bytes_optimised_code_functions_and_the_drivers_replies() -> None:
    # nodes: [type, name, id, self_size, edge_count]; edges: [type, name_or_index, to_node (field offset)]
    strings = ["", "deoptimization_data", "f", "g", "1 / DevTools console", "elements", '{"status":0,"value":true}']
    node_types = ["hidden", "object", "closure", "code", "array", "synthetic", "string"]
    edge_types = ["element", "property", "internal", "hidden"]
    nodes = [
        1, 0, 1, 100, 0,  # 0: an object, not code
        2, 2, 3, 32, 0,  # 1: function f
        2, 3, 5, 32, 0,  # 2: function g
        3, 0, 7, 1000, 1,  # 3: optimised code: its deoptimization data is an array of 40 bytes
        3, 0, 9, 500, 1,  # 4: unoptimised code: the shared empty array
        4, 0, 11, 40, 0,  # 5
        4, 0, 13, 8, 0,  # 6
        5, 0, 15, 0, 1,  # 7: (Global handles): one of the driver's replies
        1, 0, 17, 16, 1,  # 8: the reply's array
        4, 0, 19, 12, 1,  # 9: its elements
        6, 6, 21, 40, 0,  # 10: the reply's text
    ]
    edges = [2, 1, 5 * 5, 2, 1, 6 * 5, 2, 4, 8 * 5, 2, 5, 9 * 5, 0, 0, 10 * 5]
    snap = {"snapshot": {"meta": {"node_fields": ["type", "name", "id", "self_size", "edge_count"],
                                  "edge_fields": ["type", "name_or_index", "to_node"],
                                  "node_types": [node_types], "edge_types": [edge_types]}},
            "nodes": nodes, "edges": edges, "strings": strings}
    got = code_figures(json.dumps(snap))
    assert got.code_mb == pytest.approx(1500 / 1e6)
    assert got.optimised == 1
    assert got.functions == 2
    assert got.harness_handles == 1
    assert got.harness_mb == pytest.approx(68 / 1e6)
