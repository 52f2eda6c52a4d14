"""Recordings on object storage (issue 19 item 4; recording/store.py, docs/recording.md): a real S3-compatible server
(moto in server mode, started here on a free port) holds a recording written by the real live Recorder thread, and
everything that reads recordings reads it back as it reads the same recording in a local folder: the same objects
byte for byte, the same events, the same features, ``helios features`` and the backtest's recording lookup on the
URL; a store that cannot be reached or has no bucket gives an error saying what to check."""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _btcusdt
import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from helios_orderflow.cli.main import main
from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import Event, FeedGap
from helios_orderflow.core.settings import BacktestSettings, HeliosSettings, RecordingSettings
from helios_orderflow.features.backtest import RecordedFeatures, find_recordings
from helios_orderflow.features.compute import compute_features
from helios_orderflow.freqtrade.config import load_config
from helios_orderflow.recording import RecordingWriter, read_events
from helios_orderflow.recording.checkpoints import checkpoints
from helios_orderflow.recording.compact import compact_recording
from helios_orderflow.recording.reader import content_key, list_streams, stream_span
from helios_orderflow.recording.recorder import STORE_PAUSE_GAP_REASON, Recorder
from helios_orderflow.recording.retention import apply_retention
from helios_orderflow.recording.store import RemotePath, open_url

BUCKET = "helios"
EX, SYM = _btcusdt.EXCHANGE, _btcusdt.SYMBOL
#: A checkpoint the recorder writes beside both recordings, half-way through.
CKPT_AT = 50_000


#: moto's S3 server on a free port (printed), answering one request at a time: moto's objects are not thread-safe
#: (an object's ETag is computed from its buffer without the lock its reads take, so a listing beside a GET of the
#: same object can return a torn body: moto's bug, not a store's behaviour).
_SERVER = """
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=False)
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server with one bucket; credentials in the environment, as a user sets them. Its own process, as
    a real store is: in this process (moto's ThreadedMotoServer) it shares the GIL with the recorder and the racing
    reader, and recording took minutes."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"AWS_ACCESS_KEY_ID": "helios-test", "AWS_SECRET_ACCESS_KEY": "helios-test",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():
            mp.setenv(k, v)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        server = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        try:
            assert server.stdout is not None
            port = server.stdout.readline().strip()  # once it listens
            assert port.isdigit(), f"the moto server did not start (exit {server.poll()})"
            url = f"http://127.0.0.1:{port}"
            boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
            yield url
        finally:
            server.terminate()
            server.wait(30)


def _record(root: str | Path, events: tuple[Event, ...]) -> None:
    """The live path: the Recorder thread (flushing every 250 ms, so open segments are uploaded again) with
    a checkpoint request half-way, as the feed makes them."""
    settings = HeliosSettings(recording=RecordingSettings(flush_interval_s=0.25))
    rec = Recorder(root, settings)
    for i, ev in enumerate(events):
        rec.put(ev)
        if i == CKPT_AT:
            rec.checkpoint(EX, SYM, pickle.dumps({"events_seen": i + 1}), "fp-test", ev.ts_us)
    rec.close(timeout_s=600)
    assert rec.error is None and rec.paused is None and rec.dropped == 0


@pytest.fixture(scope="module")
def recorded(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, Any]]:
    """The bundled BTCUSDT stream recorded to s3://helios/rec and to a local folder; while the S3 one is written
    a reader opens every object it lists, over and over (what it saw: ``seen``)."""
    events = _btcusdt.events()
    url = f"s3://{BUCKET}/rec?endpoint_override={endpoint}"
    local = tmp_path_factory.mktemp("local")
    seen: dict[str, Any] = {"opened": 0, "bad": []}
    done = threading.Event()

    def watch() -> None:  # a reader racing the writer: every object under its final name is a whole file
        s3 = boto3.client("s3", endpoint_url=endpoint)
        root = open_url(url)
        while not done.wait(0.05):
            for path in root.walk_files():
                if not path.name.endswith(".parquet"):
                    continue
                try:
                    # The object as stored (one GET), then as the reader takes it (RemotePath.open_parquet).
                    body = s3.get_object(Bucket=BUCKET, Key=path.path.split("/", 1)[1])["Body"].read()
                    pq.read_table(pa.BufferReader(body))
                    path.open_parquet().read()
                    seen["opened"] += 1
                except (FileNotFoundError, s3.exceptions.NoSuchKey):
                    pass
                except Exception as exc:
                    seen["bad"].append(f"{path}: {exc}")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _record(url, events)
    finally:
        done.set()
        watcher.join(60)
    _record(local, events)
    return url, local, seen


def _objects(url: str) -> dict[str, bytes]:
    root = open_url(url)
    return {p.path[len(root.path) + 1:]: p.read_bytes() for p in root.walk_files()}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_s3_recording_has_the_local_layout_and_the_same_bytes(recorded: tuple[str, Path, dict[str, Any]]) -> None:
    url, local, seen = recorded
    remote, here = _objects(url), _files(local)
    assert sorted(remote) == sorted(here)  # partitions, segment names, _runs, _checkpoints
    assert any(k.startswith("book/exchange=binance/symbol=BTC_USDT/date=2024-08-09/") for k in remote)
    assert any(k.startswith("_runs/") for k in remote) and any(k.startswith("_checkpoints/") for k in remote)
    assert sum(k.endswith(".parquet") for k in remote) == 36
    assert remote == here
    # Segments were uploaded again and again while a reader listed and opened them: never a partial object.
    assert seen["opened"] > 0 and seen["bad"] == []


def test_events_read_from_s3_equal_the_local_recordings_row_for_row(
        recorded: tuple[str, Path, dict[str, Any]]) -> None:
    url, local, _ = recorded
    from_s3 = list(read_events(url))
    assert len(from_s3) == len(_btcusdt.events()) == 99_574
    assert from_s3 == list(read_events(local)) == list(_btcusdt.events())
    assert list_streams(url) == list_streams(local) == [(EX, SYM)]
    assert stream_span(url, EX, SYM) == stream_span(local, EX, SYM)
    # Time filter and a start mid-way (what a restarted feed replays after its checkpoint) too.
    start = _btcusdt.events()[CKPT_AT].ts_us
    assert list(read_events(url, start_us=start)) == list(read_events(local, start_us=start))


def test_features_from_s3_equal_the_local_ones_and_cache_locally(
        recorded: tuple[str, Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, local, _ = recorded
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    here = compute_features(local, SYM, "1m", cache=False)
    first = compute_features(url, SYM, "1m")
    assert first.attrs["helios_cache"] == "miss" and len(first) == 12
    assert_frame_equal(first, here, check_exact=True)
    # The cache of an object store's recording is a local folder: the store stays read-only for research.
    cache = Path(first.attrs["helios_cache_path"])
    assert cache.is_relative_to(tmp_path / "xdg" / "helios" / "s3" / BUCKET / "rec")
    again = compute_features(url, SYM, "1m")
    assert again.attrs["helios_cache"] == "hit"
    assert_frame_equal(again, here, check_exact=True)
    assert content_key(url, EX, SYM) == content_key(url, EX, SYM)


def test_helios_features_takes_an_s3_url(recorded: tuple[str, Path, dict[str, Any]], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url, local, _ = recorded
    # The endpoint from the environment this time, as the AWS tools take it.
    monkeypatch.setenv("AWS_ENDPOINT_URL", url.split("endpoint_override=")[1])
    bare = url.split("?")[0]
    assert main(["features", bare, "--no-cache", "--out", str(tmp_path / "s3.parquet")]) == 0
    s3_text = capsys.readouterr().out
    assert main(["features", str(local), "--no-cache", "--out", str(tmp_path / "local.parquet")]) == 0
    local_text = capsys.readouterr().out
    assert "binance BTC/USDT 1m: 12 candles" in s3_text and "delta sum -28.93328" in s3_text
    def same(text: str) -> list[str]:  # the summary lines, without timings and the output path
        return [re.sub(r"[\d.]+ ?s\b", "", ln) for ln in text.splitlines() if "written to" not in ln]

    assert same(s3_text) == same(local_text)
    assert_frame_equal(pd.read_parquet(tmp_path / "s3.parquet"), pd.read_parquet(tmp_path / "local.parquet"),
                       check_exact=True)
    assert main(["inspect", bare, "--json", "--no-progress"]) == 0
    assert '"trades": 19904' in capsys.readouterr().out


def test_backtest_recordings_and_recording_path_accept_an_s3_url_with_the_endpoint_setting(
        recorded: tuple[str, Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, local, _ = recorded
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    endpoint = url.split("endpoint_override=")[1]
    config = load_config({"exchange": {"name": "binance"}, "helios": {
        "recording": {"path": f"s3://{BUCKET}/live", "endpoint_url": endpoint},
        "backtest": {"recordings": f"s3://{BUCKET}"}}})
    rec_dir, found_in = config.recording_dir, config.recordings_dir
    assert isinstance(rec_dir, RemotePath) and str(rec_dir) == f"s3://{BUCKET}/live"
    # The bucket's top is a folder of recordings: rec/ is one of them.
    assert [str(r) for r in find_recordings(found_in)] == [f"s3://{BUCKET}/rec"]
    assert pickle.loads(pickle.dumps(found_in)) == found_in  # hyperopt sends it to its workers
    # The backtest's feature tables, built by 2 worker processes that read the store themselves.
    settings = HeliosSettings(backtest=BacktestSettings(workers=2))
    from_s3 = RecordedFeatures(found_in, EX, "1m", settings).frame(SYM)
    assert len(from_s3) == 12
    assert_frame_equal(from_s3, RecordedFeatures(local, EX, "1m", settings, cache=False).frame(SYM), check_exact=True)


def test_the_recorders_checkpoint_on_s3_is_found_and_loads(recorded: tuple[str, Path, dict[str, Any]]) -> None:
    url, local, _ = recorded
    (remote,) = checkpoints(open_url(url), EX, SYM)
    (here,) = checkpoints(local, EX, SYM)
    assert remote.position == here.position and remote.position[2] == CKPT_AT
    assert remote.load() == here.load() == {"events_seen": CKPT_AT + 1}


def test_an_unreachable_store_or_a_missing_bucket_says_what_to_check(endpoint: str) -> None:
    with pytest.raises(HeliosError, match=r"cannot list s3://helios/x.*check the endpoint"):
        list_streams("s3://helios/x?endpoint_override=http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(HeliosError, match=r"cannot write s3://no-such-bucket/rec/book.*create the bucket "
                                          r"'no-such-bucket'"):
        RecordingWriter(f"s3://no-such-bucket/rec?endpoint_override={endpoint}")
    with pytest.raises(HeliosError, match=r"'s3://helios/empty' is not a Helios recording"):
        list(read_events(f"s3://helios/empty?endpoint_override={endpoint}"))
    with pytest.raises(HeliosError, match="names no bucket"):
        open_url("s3://")


def test_compaction_refuses_an_object_store_and_says_why(endpoint: str) -> None:
    with pytest.raises(HeliosError, match="helios compact needs a local folder"):
        compact_recording(f"s3://{BUCKET}/rec?endpoint_override={endpoint}")


def test_retention_on_s3_deletes_the_oldest_whole_days(endpoint: str) -> None:
    from test_recording_retention import DAY0, make_recording, noon

    url = f"s3://{BUCKET}/retention?endpoint_override={endpoint}"
    by_day = make_recording(open_url(url), range(DAY0, DAY0 + 3))  # type: ignore[arg-type]
    result = apply_retention(url, retention_days=2, now_us=noon(DAY0 + 2))
    assert result.deleted == ["2024-08-09"] and result.freed_bytes > 0
    assert not any("date=2024-08-09" in k for k in _objects(url))
    assert list(read_events(url)) == by_day[DAY0 + 1] + by_day[DAY0 + 2]


class _Relay:
    """A TCP relay between the recorder and the S3 server that can be cut and restored: a network outage."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # the same port again after a cut
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for sock in (a, b):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        assert self._listener is not None
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._conns.clear()


def _wait(what: str, ok: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        assert time.monotonic() < deadline, f"waited {timeout_s:.0f} s for {what}"
        time.sleep(0.05)


def test_a_store_that_stops_answering_pauses_recording_and_it_resumes_with_a_gap(endpoint: str) -> None:
    relay = _Relay(int(endpoint.rsplit(":", 1)[1]))
    url = f"s3://{BUCKET}/outage?endpoint_override=http://127.0.0.1:{relay.port}"
    direct = f"s3://{BUCKET}/outage?endpoint_override={endpoint}"  # past the relay, to look
    events = [e for e in _btcusdt.events() if type(e).__name__ in ("Trade", "BestBidOffer")][:30_000]
    before, during, after = events[:10_000], events[10_000:20_000], events[20_000:]
    run = open_url(direct) / "_runs"

    def committed() -> int:
        files = [p for p in run.iterdir() if p.name.endswith(".json")]
        return json.loads(files[0].read_text())["committed_seq"] if files else -1

    rec = Recorder(url, HeliosSettings(recording=RecordingSettings(flush_interval_s=0.2)))
    try:
        for ev in before:
            rec.put(ev)
        _wait("the first events on the store", lambda: committed() == len(before) - 1)
        relay.cut()
        for ev in during:
            rec.put(ev)
        _wait("the pause", lambda: rec.paused is not None)
        assert rec.error is None and f"the store s3://{BUCKET}/outage cannot be written" in (rec.problem or "")
        relay.restore()
        _wait("the resume", lambda: rec.paused is None)
        for ev in after:
            rec.put(ev)
    finally:
        rec.close(timeout_s=120)
    assert rec.error is None and rec.pauses == 1 and 0 < rec.dropped <= len(during)
    back = list(read_events(direct))
    gaps = [e for e in back if isinstance(e, FeedGap)]
    assert len(gaps) == 1 and gaps[0].reason == f"{STORE_PAUSE_GAP_REASON} ({rec.dropped} events not recorded)"
    cut_at = back.index(gaps[0])
    # Everything before the outage is there, then the gap, then what came after it: nothing else is lost.
    assert back[:len(before)] == before
    assert back[cut_at + 1:] == after
    assert back[:cut_at] == events[:cut_at] and cut_at + rec.dropped == len(before) + len(during)
