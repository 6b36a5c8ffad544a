"""Readers / writers of the event formats: round trips, hand-made files from the published layouts, windows, errors."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_crossdistill.data.events import (
    EVENT_FORMATS,
    EventFormatError,
    Events,
    detect_format,
    open_recording,
    read_events,
    write_events,
)

# file name per format (the suffix selects the format when format=None)
NAMES = {
    "dsec_h5": "events.h5",
    "mvsec_h5": "rec_data.hdf5",
    "ncaltech_bin": "image_0001.bin",
    "e2vid_txt": "events.txt",
    "ddd17_ess": "rec_dir",
}
SENSOR = (200, 240)  # (H, W): fits every format, y = 240 never occurs


def random_events(n: int, seed: int = 0, *, t_max: int = 3_000_000, sensor=SENSOR) -> Events:
    rng = np.random.default_rng(seed)
    h, w = sensor
    t = np.sort(rng.integers(0, t_max, n))
    return Events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.choice([-1, 1], n), sensor)


def assert_same_events(a: Events, b: Events) -> None:
    assert len(a) == len(b)
    for k in "xytp":
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert a.t.dtype == np.int64 and a.p.dtype == np.int8


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    "fmt,options",
    [
        ("dsec_h5", {}),
        ("dsec_h5", {"compression": "zstd"}),
        ("dsec_h5", {"compression": "gzip", "t_offset": 0}),
        ("mvsec_h5", {}),
        ("ncaltech_bin", {}),
        ("e2vid_txt", {}),
        ("e2vid_txt", {"zip": True}),
        ("ddd17_ess", {}),
    ],
)
def test_round_trip_every_format(tmp_path, fmt, options):
    options = dict(options)
    name = "events.zip" if options.pop("zip", False) else NAMES[fmt]
    events = random_events(2000, seed=1, t_max=20_000_000)  # > 2^23 µs: N-Caltech overflow markers needed
    path = write_events(tmp_path / name, events, **options)
    assert detect_format(path) == fmt
    back = read_events(path, sensor_size=SENSOR)
    assert_same_events(back, events)
    assert back.sensor_size == SENSOR


def test_e2vid_header_gives_sensor_size(tmp_path):
    events = random_events(50, sensor=(33, 47))
    write_events(tmp_path / "e.txt", events)
    assert (tmp_path / "e.txt").read_text().splitlines()[0] == "47 33"
    assert read_events(tmp_path / "e.txt").sensor_size == (33, 47)


def test_default_sensor_sizes(tmp_path):
    events = random_events(10)
    assert read_events(write_events(tmp_path / "events.h5", events)).sensor_size == (480, 640)
    assert read_events(write_events(tmp_path / "r", events)).sensor_size == (260, 346)
    assert read_events(write_events(tmp_path / "d.hdf5", events)).sensor_size == (260, 346)
    back = read_events(write_events(tmp_path / "a.bin", events))
    assert back.sensor_size == (int(events.y.max()) + 1, int(events.x.max()) + 1)


@pytest.mark.parametrize("fmt", EVENT_FORMATS)
def test_empty_round_trip(tmp_path, fmt):
    empty = Events(np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.int64), np.zeros(0, np.int8), SENSOR)
    back = read_events(write_events(tmp_path / NAMES[fmt], empty), sensor_size=SENSOR)
    assert len(back) == 0 and back.sensor_size == SENSOR


@settings(max_examples=25, deadline=None)
@given(
    deltas=st.lists(st.integers(0, 3_000_000), min_size=1, max_size=40),
    start=st.integers(0, 10_000_000),
    seed=st.integers(0, 2**16),
)
def test_ncaltech_round_trip_any_timestamps(deltas, start, seed):
    t = start + np.cumsum(deltas)
    rng = np.random.default_rng(seed)
    n = len(t)
    events = Events(rng.integers(0, 230, n), rng.integers(0, 230, n), t, rng.choice([-1, 1], n), (230, 230))
    with tempfile.TemporaryDirectory() as d:
        back = read_events(write_events(Path(d) / "x.bin", events), sensor_size=(230, 230))
    assert_same_events(back, events)


# ------------------------------------------------------------------------------------------------ hand-made files


def ncaltech_record(x: int, y: int, p: int, t: int) -> bytes:
    return bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])


def test_ncaltech_hand_made_bytes_with_overflow(tmp_path):
    data = (
        ncaltech_record(3, 4, 1, 0x7FFFF0)  # near the largest 23-bit timestamp
        + ncaltech_record(0, 240, 0, 0)  # overflow marker: +2^13 for what follows, dropped
        + ncaltech_record(7, 8, 0, 0x7FE005)
    )
    path = tmp_path / "hand.bin"
    path.write_bytes(data)
    e = read_events(path, format="ncaltech_bin", sensor_size=(10, 10))
    np.testing.assert_array_equal(e.x, [3, 7])
    np.testing.assert_array_equal(e.y, [4, 8])
    np.testing.assert_array_equal(e.p, [1, -1])
    np.testing.assert_array_equal(e.t, [0x7FFFF0, 0x7FE005 + 2**13])


def test_ncaltech_hand_made_sorted_stream(tmp_path):
    data = (
        ncaltech_record(5, 6, 0, 17)
        + ncaltech_record(7, 8, 1, 0x000123)
        + ncaltech_record(0, 240, 0, 0)
        + ncaltech_record(9, 1, 0, 1)
        + ncaltech_record(0, 240, 0, 0)
        + ncaltech_record(0, 240, 0, 0)
        + ncaltech_record(2, 2, 1, 5)
    )
    path = tmp_path / "hand.bin"
    path.write_bytes(data)
    e = read_events(path)
    np.testing.assert_array_equal(e.t, [17, 0x123, 1 + 2**13, 5 + 3 * 2**13])
    np.testing.assert_array_equal(e.x, [5, 7, 9, 2])
    np.testing.assert_array_equal(e.p, [-1, 1, -1, 1])
    assert e.sensor_size == (9, 10)  # max + 1


def test_dsec_hand_made_h5(tmp_path):
    path = tmp_path / "events.h5"
    with h5py.File(path, "w") as f:
        f["events/x"] = np.array([0, 639, 10], np.uint16)
        f["events/y"] = np.array([479, 0, 5], np.uint16)
        f["events/t"] = np.array([5, 1500, 1500], np.uint32)
        f["events/p"] = np.array([1, 0, 1], np.uint8)
        f["ms_to_idx"] = np.array([0, 1, 3], np.uint64)
        f["t_offset"] = np.int64(1_000_000)
    e = read_events(path)
    np.testing.assert_array_equal(e.x, [0, 639, 10])
    np.testing.assert_array_equal(e.y, [479, 0, 5])
    np.testing.assert_array_equal(e.t, [1_000_005, 1_001_500, 1_001_500])
    np.testing.assert_array_equal(e.p, [1, -1, 1])
    assert e.sensor_size == (480, 640)


def test_dsec_writer_layout(tmp_path):
    events = Events([1, 2, 3, 4], [0, 0, 0, 0], [100, 1000, 2999, 3000], [1, -1, -1, 1], (480, 640))
    path = write_events(tmp_path / "events.h5", events, t_offset=100)
    with h5py.File(path, "r") as f:
        assert f["events/x"].dtype == np.uint16 and f["events/y"].dtype == np.uint16
        assert f["events/t"].dtype == np.uint32 and f["events/p"].dtype == np.uint8
        np.testing.assert_array_equal(f["events/t"][:], [0, 900, 2899, 2900])
        np.testing.assert_array_equal(f["events/p"][:], [1, 0, 0, 1])
        assert int(f["t_offset"][()]) == 100
        ms = f["ms_to_idx"][:]
        t = f["events/t"][:].astype(np.int64)
    assert ms.dtype == np.uint64
    for m, i in enumerate(ms.astype(np.int64)):  # t[ms_to_idx[m]] >= 1000 m > t[ms_to_idx[m] - 1]
        assert i == len(t) or t[i] >= 1000 * m
        assert i == 0 or t[i - 1] < 1000 * m


def test_dsec_compressed_file_is_really_compressed(tmp_path):
    events = random_events(5000)
    path = write_events(tmp_path / "events.h5", events, compression="zstd")
    with h5py.File(path, "r") as f:
        assert "32001" in f["events/t"]._filters  # the Blosc filter id
    assert_same_events(read_events(path, sensor_size=SENSOR), events)


def test_dsec_window_uses_ms_to_idx_only(tmp_path):
    # The tail is unsorted garbage: a window read bracketed by ms_to_idx never looks at it, a full read refuses it.
    path = tmp_path / "events.h5"
    with h5py.File(path, "w") as f:
        f["events/x"] = np.arange(6, dtype=np.uint16)
        f["events/y"] = np.zeros(6, np.uint16)
        f["events/t"] = np.array([0, 500, 1500, 2500, 100, 9000], np.uint32)
        f["events/p"] = np.ones(6, np.uint8)
        f["ms_to_idx"] = np.array([0, 2, 3, 4], np.uint64)
        f["t_offset"] = np.int64(0)
    w = read_events(path, t_start_us=1000, t_end_us=2000)
    np.testing.assert_array_equal(w.t, [1500])
    np.testing.assert_array_equal(w.x, [2])
    with pytest.raises(EventFormatError, match="not sorted"):
        read_events(path)


def test_dsec_window_without_ms_to_idx_or_with_a_short_one(tmp_path):
    events = random_events(300, seed=7, t_max=40_000, sensor=(480, 640))
    path = write_events(tmp_path / "events.h5", events)
    with h5py.File(path, "r+") as f:
        del f["ms_to_idx"]  # bisection on events/t instead
    for t0, t1 in [(5_000, 17_500), (0, 40_000), (39_000, 50_000)]:
        assert_same_events(read_events(path, t_start_us=t0, t_end_us=t1), events.slice_time(t0, t1))
    with h5py.File(path, "r+") as f:
        f["ms_to_idx"] = np.searchsorted(events.t - events.t[0], [0, 1000, 2000]).astype(np.uint64)
    for t0, t1 in [(5_000, 17_500), (1_500, 39_999)]:
        assert_same_events(read_events(path, t_start_us=t0, t_end_us=t1), events.slice_time(t0, t1))


def test_mvsec_hand_made_h5(tmp_path):
    path = tmp_path / "outdoor_day1_data.hdf5"
    rows = np.array([[1, 2, 1504645177.123456, 1], [345, 259, 1504645177.5, -1]], np.float64)
    with h5py.File(path, "w") as f:
        f["davis/left/events"] = rows
    e = read_events(path)
    np.testing.assert_array_equal(e.x, [1, 345])
    np.testing.assert_array_equal(e.y, [2, 259])
    np.testing.assert_array_equal(e.t, [1504645177123456, 1504645177500000])
    np.testing.assert_array_equal(e.p, [1, -1])
    assert e.sensor_size == (260, 346)


def test_mvsec_writes_images(tmp_path):
    events = random_events(100, sensor=(260, 346))
    images = np.random.default_rng(0).integers(0, 256, (3, 260, 346), dtype=np.uint8)
    ts = np.array([0, 1_000_000, 2_000_000])
    path = write_events(tmp_path / "d.hdf5", events, images=images, image_timestamps_us=ts)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["davis/left/image_raw"][:], images)
        np.testing.assert_allclose(f["davis/left/image_raw_ts"][:], ts / 1e6)
        np.testing.assert_array_equal(f["davis/left/image_raw_event_inds"][:], np.searchsorted(events.t, ts))


@pytest.mark.parametrize("zipped", [False, True])
def test_e2vid_hand_made_text(tmp_path, zipped):
    text = "346 260\n0.000010 1 2 1\n0.5 3 4 0\n1.25 345 259 1\n"
    if zipped:
        path = tmp_path / "ev.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("events.txt", text)
    else:
        path = tmp_path / "ev.txt"
        path.write_text(text)
    e = read_events(path)
    np.testing.assert_array_equal(e.t, [10, 500_000, 1_250_000])
    np.testing.assert_array_equal(e.x, [1, 3, 345])
    np.testing.assert_array_equal(e.y, [2, 4, 259])
    np.testing.assert_array_equal(e.p, [1, -1, 1])
    assert e.sensor_size == (260, 346)


def make_ess_folder(path: Path, t_ns, xyp) -> Path:
    path.mkdir()
    np.asarray(t_ns, np.int64).tofile(path / "events.dat.t")
    np.asarray(xyp, np.int16).reshape(-1, 3).tofile(path / "events.dat.xyp")
    return path


def test_ess_hand_made_memmaps(tmp_path):
    rec = make_ess_folder(tmp_path / "rec", [1_000, 2_999, 5_000_000], [[0, 0, 1], [345, 259, 0], [10, 20, 1]])
    e = read_events(rec)
    np.testing.assert_array_equal(e.t, [1, 2, 5000])  # ns -> µs
    np.testing.assert_array_equal(e.x, [0, 345, 10])
    np.testing.assert_array_equal(e.y, [0, 259, 20])
    np.testing.assert_array_equal(e.p, [1, -1, 1])
    assert e.sensor_size == (260, 346)


def test_ess_index_files(tmp_path):
    events = random_events(3000, seed=3, t_max=2_000_000, sensor=(260, 346))
    frames = np.array([100_000, 300_000, 1_000_000, 1_999_000])
    rec = write_events(tmp_path / "rec", events, frame_timestamps_us=frames)
    with open_recording(rec) as r:
        for ms in (10, 50, 250):
            rows = np.load(rec / "index" / f"index_{ms}ms.npy")
            assert rows.dtype == np.int64 and rows.shape == (4, 3)
            np.testing.assert_array_equal(rows[:, 0], frames * 1000)
            for k, f in enumerate(frames):
                assert_same_events(r.read_frame_window(k, ms), events.slice_time(f - ms * 1000, f))


# ------------------------------------------------------------------------------------------------ windows


@pytest.mark.parametrize("fmt", EVENT_FORMATS)
def test_time_window_reads(tmp_path, fmt):
    events = random_events(3000, seed=2, t_max=5_000_000)
    path = write_events(tmp_path / NAMES[fmt], events)
    windows = [(0, 1), (1_234_567, 2_345_678), (4_000_000, 10**12), (-5, 7), (events.t[10], events.t[10] + 1)]
    for t0, t1 in windows:
        got = read_events(path, t_start_us=t0, t_end_us=t1, sensor_size=SENSOR)
        assert_same_events(got, events.slice_time(t0, t1))
    assert_same_events(
        read_events(path, t_start_us=2_000_000, sensor_size=SENSOR), events.slice_time(2_000_000, 10**15)
    )
    assert_same_events(read_events(path, t_end_us=2_000_000, sensor_size=SENSOR), events.slice_time(-1, 2_000_000))


@pytest.mark.parametrize("fmt", EVENT_FORMATS)
def test_empty_window_is_empty_events(tmp_path, fmt):
    events = Events([1, 2], [1, 2], [1000, 900_000], [1, -1], SENSOR)
    path = write_events(tmp_path / NAMES[fmt], events)
    for t0, t1 in [(2000, 800_000), (10**7, 10**8), (0, 1000), (5, 5)]:
        got = read_events(path, t_start_us=t0, t_end_us=t1, sensor_size=SENSOR)
        assert len(got) == 0 and got.sensor_size == SENSOR and got.t.dtype == np.int64


@pytest.mark.parametrize("fmt", EVENT_FORMATS)
def test_open_recording_api(tmp_path, fmt):
    events = random_events(500, seed=4, t_max=1_000_000)
    path = write_events(tmp_path / NAMES[fmt], events)
    with open_recording(path, sensor_size=SENSOR) as rec:
        assert rec.format == fmt and rec.num_events == len(rec) == 500 and rec.sensor_size == SENSOR
        assert rec.t_first_us == events.t[0] and rec.t_last_us == events.t[-1]
        assert rec.duration_us == events.t[-1] - events.t[0]
        chunk = rec.read_count(100, 50)
        np.testing.assert_array_equal(chunk.t, events.t[100:150])
        assert len(rec.read_count(480, 50)) == 20 and len(rec.read_count(600, 5)) == 0
        assert rec.index_of_time(int(events.t[200])) == np.searchsorted(events.t, events.t[200])
        with pytest.raises(ValueError, match="t0_us <= t1_us"):
            rec.read_window(10, 5)
        with pytest.raises(ValueError, match="i0 >= 0"):
            rec.read_count(-1, 5)


# ------------------------------------------------------------------------------------------------ detection


def test_detect_format(tmp_path):
    assert detect_format(tmp_path) == "ddd17_ess"
    assert detect_format(tmp_path / "new_rec") == "ddd17_ess"
    assert detect_format("a/b.bin") == "ncaltech_bin"
    assert detect_format("a/b.txt") == "e2vid_txt" and detect_format("a/b.zip") == "e2vid_txt"
    assert detect_format(tmp_path / "new.h5") == "dsec_h5" and detect_format(tmp_path / "new.hdf5") == "mvsec_h5"
    # existing HDF5 files are recognised by content, whatever their suffix
    write_events(tmp_path / "m.h5", random_events(3), format="mvsec_h5")
    assert detect_format(tmp_path / "m.h5") == "mvsec_h5"
    with pytest.raises(EventFormatError, match="cannot tell"):
        detect_format("a/b.xyz")
    with pytest.raises(ValueError, match="format must be one of"):
        read_events(tmp_path / "m.h5", format="aedat")


# ------------------------------------------------------------------------------------------------ bad input


def test_truncated_bin(tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(ncaltech_record(1, 1, 1, 5) + b"\x01\x02")
    with pytest.raises(EventFormatError, match="truncated") as err:
        read_events(path)
    assert str(path) in str(err.value)


def test_h5_without_events_t(tmp_path):
    path = tmp_path / "events.h5"
    with h5py.File(path, "w") as f:
        for k in "xyp":
            f[f"events/{k}"] = np.zeros(3, np.uint8)
    with pytest.raises(EventFormatError, match="events/t") as err:
        read_events(path)
    assert str(path) in str(err.value)


def test_h5_of_unknown_layout_and_non_h5(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["foo"] = np.zeros(3)
    with pytest.raises(EventFormatError, match="neither"):
        read_events(path)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(EventFormatError, match="not a readable HDF5"):
        read_events(bad, format="dsec_h5")


def write_dsec_raw(path: Path, x, y, t, p, **extra) -> Path:
    with h5py.File(path, "w") as f:
        f["events/x"], f["events/y"], f["events/t"], f["events/p"] = x, y, t, p
        for k, v in extra.items():
            f[k] = v
    return path


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"t": np.array([5, 3, 9], np.uint32)}, "not sorted"),
        ({"x": np.array([0, 640, 1], np.uint16)}, "outside"),
        ({"t": np.array([1.0, 2.0, 3.0])}, "dtype"),
        ({"p": np.array([0, 2, 1], np.uint8)}, "0 or 1"),
        ({"y": np.zeros((3, 1), np.uint16)}, "1-D"),
        ({"x": np.zeros(4, np.uint16)}, "entries"),
    ],
)
def test_bad_dsec_files(tmp_path, fields, match):
    base = {
        "x": np.array([0, 1, 2], np.uint16),
        "y": np.array([0, 1, 2], np.uint16),
        "t": np.array([1, 2, 3], np.uint32),
        "p": np.array([0, 1, 1], np.uint8),
    }
    base.update(fields)
    path = write_dsec_raw(tmp_path / "events.h5", **base)
    with pytest.raises(EventFormatError, match=match) as err:
        read_events(path)
    assert str(path) in str(err.value)


def test_bad_mvsec_files(tmp_path):
    path = tmp_path / "a.hdf5"
    with h5py.File(path, "w") as f:
        f["davis/left/events"] = np.zeros((3, 3))
    with pytest.raises(EventFormatError, match="4 columns"):
        read_events(path)
    with h5py.File(path, "w") as f:
        f["davis/left/events"] = np.zeros((3, 4), np.int32)
    with pytest.raises(EventFormatError, match="dtype"):
        read_events(path)
    with h5py.File(path, "w") as f:
        f["davis/left/events"] = np.array([[0, 0, 1.0, 1], [0, 0, 0.5, -1]])
    with pytest.raises(EventFormatError, match="not sorted"):
        read_events(path)
    with h5py.File(path, "w") as f:
        f["davis/left/events"] = np.array([[0.5, 0, 1.0, 1]])
    with pytest.raises(EventFormatError, match="not integers"):
        read_events(path)


def test_bad_ess_recordings(tmp_path):
    rec = make_ess_folder(tmp_path / "unsorted", [5000, 1000], [[0, 0, 1], [1, 1, 0]])
    with pytest.raises(EventFormatError, match="not sorted"):
        read_events(rec)
    rec = make_ess_folder(tmp_path / "outside", [1000, 2000], [[0, 0, 1], [346, 1, 0]])
    with pytest.raises(EventFormatError, match="outside"):
        read_events(rec)
    rec = make_ess_folder(tmp_path / "short", [1000, 2000], [[0, 0, 1]])
    with pytest.raises(EventFormatError, match="does not match"):
        read_events(rec)
    rec = make_ess_folder(tmp_path / "pol", [1000], [[0, 0, 3]])
    with pytest.raises(EventFormatError, match="polarity"):
        read_events(rec)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(EventFormatError, match="events.dat.t"):
        read_events(tmp_path / "nothing")
    (rec / "events.dat.t").write_bytes(b"\x00" * 9)
    with pytest.raises(EventFormatError, match="multiple of 8"):
        read_events(rec)
    ok = make_ess_folder(tmp_path / "ok", [1000], [[0, 0, 1]])
    with open_recording(ok) as r, pytest.raises(EventFormatError, match="no index file"):
        r.read_frame_window(0, 50)


@pytest.mark.parametrize(
    "text,match",
    [
        ("346\n0.1 1 1 1\n", "width height"),
        ("346 260\n0.1 1 1\n", "4 values"),
        ("346 260\n0.1 1 1 2\n", "polarity"),
        ("346 260\n0.1 1.5 1 1\n", "not integers"),
        ("346 260\n0.2 1 1 1\n0.1 1 1 1\n", "not sorted"),
        ("10 10\n0.1 10 1 1\n", "outside"),
        ("10 10\n0.1 a 1 1\n", "non-numeric"),
    ],
)
def test_bad_e2vid_text(tmp_path, text, match):
    path = tmp_path / "e.txt"
    path.write_text(text)
    with pytest.raises(EventFormatError, match=match) as err:
        read_events(path)
    assert str(path) in str(err.value)


def test_bad_zip_and_missing_file(tmp_path):
    (tmp_path / "e.zip").write_bytes(b"PK but not really")
    with pytest.raises(EventFormatError, match="not a zip"):
        read_events(tmp_path / "e.zip")
    with pytest.raises(EventFormatError, match="no such file"):
        read_events(tmp_path / "missing.bin")


def test_unsorted_and_out_of_sensor_bin(tmp_path):
    path = tmp_path / "u.bin"
    path.write_bytes(ncaltech_record(1, 1, 1, 50) + ncaltech_record(1, 1, 1, 10))
    with pytest.raises(EventFormatError, match="not sorted"):
        read_events(path)
    path.write_bytes(ncaltech_record(20, 1, 1, 50))
    with pytest.raises(EventFormatError, match="outside"):
        read_events(path, sensor_size=(10, 10))


def test_writer_rejects_unrepresentable_events(tmp_path):
    with pytest.raises(EventFormatError, match="overflow marker"):
        write_events(tmp_path / "a.bin", Events([1], [240], [0], [1], (241, 10)))
    with pytest.raises(EventFormatError, match="one byte"):
        write_events(tmp_path / "a.bin", Events([300], [1], [0], [1], (10, 400)))
    with pytest.raises(EventFormatError, match=">= 0"):
        write_events(tmp_path / "a.bin", Events([1], [1], [-5], [1], (10, 10)))
    with pytest.raises(EventFormatError, match="uint32"):
        write_events(tmp_path / "a.h5", Events([1], [1], [5], [1], (10, 10)), t_offset=10)
    with pytest.raises(ValueError, match="compression"):
        write_events(tmp_path / "a.h5", Events([1], [1], [5], [1], (10, 10)), compression="brotli")
    with pytest.raises(TypeError, match="Events"):
        write_events(tmp_path / "a.h5", {"x": [1]})
    e = Events([1], [1], [5], [1], (10, 10))
    e.x[0] = 50  # mutated after construction: the writer re-validates
    with pytest.raises(EventFormatError, match="outside"):
        write_events(tmp_path / "a.txt", e)
