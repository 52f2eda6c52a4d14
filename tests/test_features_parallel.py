"""Parallel and distributed feature building with exact chunk boundaries (issue 19 items 1 and 2;
docs/research.md): a 3-day, 3-pair synthetic recording gives the sequential frames bit for bit, every candle and
every column, on local worker processes, on a real Dask LocalCluster (scheduler and worker processes) and day by
day from the midnight checkpoints; a day computed alone equals the same candles of the whole run."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from helios_orderflow.cli.main import main as helios_main
from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.settings import BacktestSettings, HeliosSettings
from helios_orderflow.devtools.benchmarks.features_parallel import MIDNIGHTS, PAIRS, write_three_days
from helios_orderflow.features.backtest import RecordedFeatures, dates_us
from helios_orderflow.features.chunks import (
    DAY_US,
    Chunk,
    Job,
    checkpoint_folder,
    positioned_events,
    read_marks,
    run_chunk,
)
from helios_orderflow.features.compute import FEATURE_COLUMNS, compute_features
from helios_orderflow.features.parallel import build_features, compute_many
from helios_orderflow.recording.reader import index_recording

EXCHANGE = "binance"
DAY1 = int(MIDNIGHTS[0].timestamp() * 1_000_000)  # 2024-01-02 00:00 UTC
DAY2 = int(MIDNIGHTS[1].timestamp() * 1_000_000)  # 2024-01-03 00:00 UTC


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 1 minute either side of 2024-01-02 and 2024-01-03 00:00 UTC: three UTC days, books live across midnights.
    return write_three_days(tmp_path_factory.mktemp("three_days") / "rec", minutes=1)


@pytest.fixture(scope="module")
def sequential(recording: Path) -> dict[str, pd.DataFrame]:
    """The reference: one replay per pair, the path that existed before chunks."""
    return {p: compute_features(recording, p, "1m", exchange=EXCHANGE, cache=False) for p in PAIRS}


@pytest.fixture(scope="module")
def checkpointed(recording: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder where a first (sequential, in-process) run left every pair's midnight checkpoints."""
    cache_dir = tmp_path_factory.mktemp("checkpoints")
    frames = build_features([(recording, EXCHANGE, p) for p in PAIRS], workers=1, cache=False, checkpoints=True,
                            cache_dir=cache_dir)
    assert [f.attrs["helios_chunks"] for f in frames] == ["pass"] * 3
    return cache_dir


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(FEATURE_COLUMNS)
    pdt.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True)


def test_the_recording_spans_three_utc_days_with_the_book_live_across_both_midnights(
        sequential: dict[str, pd.DataFrame]) -> None:
    for pair, frame in sequential.items():
        days = frame["date"].dt.strftime("%Y-%m-%d").unique().tolist()
        assert days == ["2024-01-01", "2024-01-02", "2024-01-03"], pair
        by_open = frame.set_index(pd.Index(dates_us(frame["date"])))
        for midnight in (DAY1, DAY2):
            # the candles either side of midnight had a book in sync: the state the next day starts from is live
            assert by_open.loc[midnight - 60_000_000, "book_ok"] == 1, pair
            assert by_open.loc[midnight, "had_book"] == 1, pair
        # CVD since the engine started carries over both midnights (the session CVD restarts there)
        assert by_open.loc[DAY2, "cvd_total"] != by_open.loc[DAY2, "cvd"]


def test_events_arrive_after_each_midnight_with_exchange_times_before_it(recording: Path) -> None:
    """The boundary is a point of the processing order (the first event at or past midnight), not a time: events
    that come after it with an earlier exchange time belong to the next chunk, as the replay applies them after
    the day's last candle closed. The recording has such events at both midnights (trades stamped in whole
    milliseconds behind a book diff already past midnight), so the equalities of this file cover them."""
    index = index_recording(recording)
    late: dict[int, set[str]] = {}
    for pair in PAIRS:
        clock = -1
        for _, ev in positioned_events(index, EXCHANGE, pair, None, None):
            if ev.ts_us // DAY_US < clock // DAY_US:
                late.setdefault(clock // DAY_US * DAY_US, set()).add(pair)
            clock = max(clock, ev.ts_us)
    assert sorted(late) == [DAY1, DAY2]
    assert all(len(pairs) >= 2 for pairs in late.values())


def test_local_workers_give_the_sequential_frames_bit_for_bit_first_by_pair_then_by_day(
        recording: Path, sequential: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    first = compute_many(recording, [(EXCHANGE, p) for p in PAIRS], workers=2, cache=False, checkpoints=True,
                         cache_dir=tmp_path)
    again = compute_many(recording, [(EXCHANGE, p) for p in PAIRS], workers=2, cache=False, checkpoints=True,
                         cache_dir=tmp_path)
    for pair in PAIRS:
        # A first run is one pass per pair (pairs in parallel) that leaves the midnight checkpoints; the next
        # run splits every pair into its three UTC days.
        assert first[(EXCHANGE, pair)].attrs["helios_chunks"] == "pass"
        assert again[(EXCHANGE, pair)].attrs["helios_chunks"] == "3 days"
        assert_same(first[(EXCHANGE, pair)], sequential[pair])
        assert_same(again[(EXCHANGE, pair)], sequential[pair])


def test_a_dask_local_cluster_of_worker_processes_gives_the_sequential_frames_bit_for_bit(
        recording: Path, sequential: dict[str, pd.DataFrame], checkpointed: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    requests = [(recording, EXCHANGE, p) for p in PAIRS]
    environ = dict(os.environ)  # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in this process for its workers
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            assert len(cluster.workers) == 2
            by_day = build_features(requests, dask=cluster.scheduler_address, cache=False, cache_dir=checkpointed,
                                    checkpoints=True)
            by_pair = build_features(requests, dask=cluster.scheduler_address, cache=False, cache_dir=tmp_path,
                                     checkpoints=True)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    for pair, day_frame, pair_frame in zip(PAIRS, by_day, by_pair, strict=True):
        assert day_frame.attrs["helios_chunks"] == "3 days"
        assert pair_frame.attrs["helios_chunks"] == "pass"
        assert_same(day_frame, sequential[pair])
        assert_same(pair_frame, sequential[pair])


def _day_chunk(recording: Path, cache_dir: Path, pair: str, day_us: int) -> Chunk:
    index = index_recording(recording)
    job = Job(index.base, EXCHANGE, pair, "1m", HeliosSettings(), None, None, True)
    folder = checkpoint_folder(cache_dir, index, job)
    marks = read_marks(folder)
    assert marks is not None and [m.day_us for m in marks] == [DAY1, DAY2]
    mark = next(m for m in marks if m.day_us == day_us)
    return Chunk(job, str(folder), mark, day_us + DAY_US)


def test_a_day_computed_alone_equals_the_same_candles_of_the_whole_run_in_every_column(
        recording: Path, sequential: dict[str, pd.DataFrame], checkpointed: Path) -> None:
    for pair in PAIRS:
        alone = run_chunk(_day_chunk(recording, checkpointed, pair, DAY1))
        whole = sequential[pair]
        opens = dates_us(whole["date"])
        want = whole[(opens >= DAY1) & (opens < DAY2)]
        assert len(alone) == 1440  # every minute of 2024-01-02, the empty hours between the two runs too
        assert_same(alone, want)


def test_the_state_a_day_starts_from_matters_a_fresh_engine_at_midnight_differs(
        recording: Path, sequential: dict[str, pd.DataFrame], checkpointed: Path) -> None:
    """What the checkpoint carries is not decoration: the same day replayed by an engine that starts at midnight
    differs (CVD since start, the previous session's volume profile), so equality above is the boundary's doing."""
    pair = PAIRS[0]
    chunk = _day_chunk(recording, checkpointed, pair, DAY1)
    with open(Path(str(chunk.folder)) / chunk.mark.file, "rb") as f:  # type: ignore[union-attr]
        engine = pickle.load(f)
    assert engine.clock_us < DAY1 and engine.book.bids.levels and engine.walls is not None
    fresh = compute_features(recording, pair, "1m", exchange=EXCHANGE, start_us=DAY1, end_us=DAY2, cache=False)
    whole = sequential[pair].set_index(sequential[pair]["date"])
    first = fresh["date"].iloc[0]
    assert whole.loc[first, "cvd_total"] != fresh["cvd_total"].iloc[0]
    assert np.isfinite(whole.loc[first, "prev_session_poc"]) and not np.isfinite(fresh["prev_session_poc"].iloc[0])


def test_features_cache_is_filled_then_hit_and_checkpoints_are_reused(recording: Path, tmp_path: Path,
                                                                       sequential: dict[str, pd.DataFrame]) -> None:
    pair = PAIRS[1]
    miss = build_features([(recording, EXCHANGE, pair)], workers=1, cache_dir=tmp_path)[0]
    hit = build_features([(recording, EXCHANGE, pair)], workers=1, cache_dir=tmp_path)[0]
    assert (miss.attrs["helios_cache"], hit.attrs["helios_cache"]) == ("miss", "hit")
    assert_same(hit, sequential[pair])
    # Another engine setting: new checkpoints (a new pass), never the old ones.
    other = HeliosSettings.from_dict({"walls": {"size_k": 4.0}})
    changed = build_features([(recording, EXCHANGE, pair)], settings=other, workers=1, cache_dir=tmp_path)[0]
    assert changed.attrs["helios_chunks"] == "pass"
    folders = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert len(folders) == 2
    manifest = json.loads((tmp_path / "checkpoints" / folders[0] / "manifest.json").read_text())
    assert [m["day_us"] for m in manifest["marks"]] == [DAY1, DAY2]


def test_backtest_features_use_the_backtest_workers_setting_and_equal_the_sequential_frames(
        recording: Path, sequential: dict[str, pd.DataFrame]) -> None:
    settings = dataclasses.replace(HeliosSettings(), backtest=BacktestSettings(workers=2))
    rf = RecordedFeatures(recording, EXCHANGE, "1m", settings, cache=False)
    rf.prefetch(PAIRS)
    for pair in PAIRS:
        got = rf.frame(pair).rename(columns=lambda c: c.removeprefix("of_"))
        assert_same(got, sequential[pair])


def test_workers_and_dask_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"helios\.backtest\.workers"):
        HeliosSettings.from_dict({"backtest": {"workers": -1}})
    with pytest.raises(ConfigError, match=r"helios\.backtest\.dask"):
        HeliosSettings.from_dict({"backtest": {"dask": "scheduler:8786"}})
    assert HeliosSettings.from_dict({"backtest": {"workers": 2, "dask": "tcp://h:8786"}}).backtest.workers == 2


def test_helios_features_with_workers_builds_every_stream(recording: Path, capsys: pytest.CaptureFixture[str],
                                                          sequential: dict[str, pd.DataFrame],
                                                          tmp_path: Path) -> None:
    assert helios_main(["features", str(recording), "--workers", "2", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for pair in PAIRS:
        assert f"{EXCHANGE} {pair} 1m: {len(sequential[pair])} candles" in out
    assert helios_main(["features", str(recording), "--symbol", PAIRS[2], "--workers", "2", "--no-cache",
                        "--out", str(tmp_path / "sol.parquet")]) == 0
    assert_same(pd.read_parquet(tmp_path / "sol.parquet"), sequential[PAIRS[2]])

