"""Readers and writers for the event-camera file formats used by EvDistill and its datasets.

Formats (the names accepted by `format=`):

- ``"dsec_h5"``: DSEC ``events.h5``. Datasets ``events/{x,y}`` (uint16), ``events/t`` (uint32, µs relative to
  ``t_offset``), ``events/p`` (uint8, 0/1), ``ms_to_idx`` (uint64, ``t[ms_to_idx[m]] >= 1000 m > t[ms_to_idx[m] - 1]``)
  and ``t_offset`` (int64). Sensor 480 x 640. Official files are Blosc/ZSTD compressed (needs `hdf5plugin`).
- ``"mvsec_h5"``: MVSEC ``*_data.hdf5``. ``davis/<camera>/events`` float64 (N, 4) rows ``(x, y, t seconds, p ±1)``,
  optionally ``image_raw`` (K, 260, 346) uint8, ``image_raw_ts`` (seconds) and ``image_raw_event_inds``.
- ``"ncaltech_bin"``: N-Caltech101 / N-MNIST ``.bin``. 5 bytes per event: x, y, then bit 7 = polarity and a 23-bit
  µs timestamp over the last 2.5 bytes. An event with y == 240 is an overflow marker that adds 2^13 µs to every
  later timestamp and is not an event.
- ``"e2vid_txt"``: E2VID / ESIM text, plain or zipped: a header line ``width height`` then ``t x y p`` per line with
  t in seconds and p in {0, 1}.
- ``"ddd17_ess"``: DDD17 as pre-processed by ESS, a recording FOLDER: ``events.dat.t`` (int64 ns, raw memmap),
  ``events.dat.xyp`` (int16 (N, 3) raw memmap: x, y, p in {0, 1}) and ``index/index_{10,50,250}ms.npy`` with one
  int64 row ``(t_ns, idx, idx_before)`` per frame: ``events[idx_before:idx]`` are the events of the window
  ``[t_ns - Δ, t_ns)``.

Every reader returns an `Events` (t in int64 µs, p in {-1, +1}) and raises `EventFormatError` naming the file and
the problem for malformed input. A time window ``[t_start_us, t_end_us)`` that holds no event gives an empty
`Events` (length 0, same sensor size), never an error.

`open_recording` gives random access without loading a whole recording (used by the streaming datasets):

    with open_recording("zurich_city_00_a/events.h5") as rec:
        window = rec.read_window(rec.t_first_us, rec.t_first_us + 50_000)  # the first 50 ms
        chunk = rec.read_count(0, 100_000)  # the first 100k events
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from .core import EventFormatError, Events

EVENT_FORMATS = ("dsec_h5", "mvsec_h5", "ncaltech_bin", "e2vid_txt", "ddd17_ess")

# (H, W) of the sensors whose files do not store it.
DSEC_SENSOR_SIZE = (480, 640)
DAVIS346_SENSOR_SIZE = (260, 346)  # DDD17 and MVSEC
ESS_INDEX_WINDOWS_MS = (10, 50, 250)

_NCALTECH_OVERFLOW_Y = 240
_NCALTECH_OVERFLOW_US = 1 << 13
_NCALTECH_MAX_T = (1 << 23) - 1
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------------------------------
# format detection


def detect_format(path: PathLike) -> str:
    """Guess the format of `path` from its name (and, for existing HDF5 files, from their groups).

    A folder (existing or to be written) is ``"ddd17_ess"``; ``.bin`` is ``"ncaltech_bin"``; ``.txt`` / ``.zip``
    are ``"e2vid_txt"``; an existing ``.h5`` / ``.hdf5`` file is ``"dsec_h5"`` if it has ``events/t`` and
    ``"mvsec_h5"`` if it has ``davis``; a new one is ``"mvsec_h5"`` for ``.hdf5`` and ``"dsec_h5"`` for ``.h5``.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        return "ddd17_ess"
    if suffix == ".bin":
        return "ncaltech_bin"
    if suffix in (".txt", ".zip"):
        return "e2vid_txt"
    if suffix in (".h5", ".hdf5"):
        if p.is_file():
            h5py = _import_h5py()
            try:
                with h5py.File(p, "r") as f:
                    if "events" in f and isinstance(f["events"], h5py.Group):
                        return "dsec_h5"
                    if "davis" in f:
                        return "mvsec_h5"
            except OSError as err:
                raise EventFormatError(f"{p}: not a readable HDF5 file ({err})") from None
            raise EventFormatError(f"{p}: HDF5 file has neither an 'events' group (DSEC) nor 'davis' (MVSEC)")
        return "mvsec_h5" if suffix == ".hdf5" else "dsec_h5"
    if suffix == "" and not p.exists():
        return "ddd17_ess"
    raise EventFormatError(f"{p}: cannot tell the event format from the name; pass format= one of {EVENT_FORMATS}")


def _check_format(path: PathLike, format: str | None) -> str:
    fmt = detect_format(path) if format is None else format
    if fmt not in EVENT_FORMATS:
        raise ValueError(f"format must be one of {EVENT_FORMATS} or None, got {format!r}")
    return fmt


def _import_h5py():
    import h5py

    with contextlib.suppress(ImportError):  # registers the Blosc / zstd filters of the official DSEC files
        import hdf5plugin  # noqa: F401
    return h5py


def _coord_dtype(sensor_size: tuple[int, int]) -> type:
    return np.int16 if max(sensor_size) <= np.iinfo(np.int16).max else np.int32


def _make_events(path: PathLike, x, y, t, p, sensor_size: tuple[int, int]) -> Events:
    """Build a validated `Events`, naming `path` in any error."""
    try:
        return Events(x, y, t, p, sensor_size)
    except EventFormatError as err:
        raise EventFormatError(f"{path}: {err}") from None


def _check_sensor_size(sensor_size, where: str) -> tuple[int, int] | None:
    if sensor_size is None:
        return None
    if len(sensor_size) != 2 or min(int(s) for s in sensor_size) <= 0:
        raise ValueError(f"{where}: sensor_size must be (H, W) with positive sizes, got {sensor_size}")
    return int(sensor_size[0]), int(sensor_size[1])


# ----------------------------------------------------------------------------------------------------------------
# random access


class EventRecording:
    """Random access to one recording, reading only what is asked for.

    Attributes:
        path: the file or folder.
        format: one of `EVENT_FORMATS`.
        sensor_size: (H, W).
        num_events: number of events in the recording.
        t_first_us / t_last_us: timestamps of the first / last event (0 / 0 when empty).

    Windows are half-open, ``[t0_us, t1_us)`` in absolute µs (the same clock as `Events.t`); a window without
    events returns an empty `Events`. Use as a context manager or call `close()`.
    """

    def __init__(self, path: PathLike, format: str, sensor_size: tuple[int, int], num_events: int) -> None:
        self.path = Path(path)
        self.format = format
        self.sensor_size = sensor_size
        self.num_events = int(num_events)
        if self.num_events > 0:
            self.t_first_us = int(self._t_at(0))
            self.t_last_us = int(self._t_at(self.num_events - 1))
        else:
            self.t_first_us = self.t_last_us = 0

    # subclasses implement these three
    def _slice(self, i0: int, i1: int) -> Events:
        """Events i0 .. i1 - 1 (0 <= i0 <= i1 <= num_events)."""
        raise NotImplementedError

    def _t_at(self, i: int) -> int:
        """Timestamp (µs) of event i."""
        raise NotImplementedError

    def _search(self, t_us: int) -> int:
        """Index of the first event with t >= t_us (num_events if none)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file handles (a no-op for in-memory formats)."""

    @property
    def duration_us(self) -> int:
        """t_last_us - t_first_us (0 for an empty recording)."""
        return self.t_last_us - self.t_first_us

    def __len__(self) -> int:
        return self.num_events

    def __enter__(self) -> EventRecording:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={str(self.path)!r}, format={self.format!r}, sensor_size={self.sensor_size}, "
            f"num_events={self.num_events}, t=[{self.t_first_us}, {self.t_last_us}] us)"
        )

    def read_all(self) -> Events:
        """Every event of the recording."""
        return self._slice(0, self.num_events)

    def index_of_time(self, t_us: int) -> int:
        """Index of the first event with t >= `t_us` (`num_events` if none)."""
        if self.num_events == 0 or t_us <= self.t_first_us:
            return 0
        if t_us > self.t_last_us:
            return self.num_events
        return int(self._search(int(t_us)))

    def read_window(self, t0_us: int | None, t1_us: int | None) -> Events:
        """Events with ``t0_us <= t < t1_us`` (None means unbounded on that side)."""
        t0 = _INT64_MIN if t0_us is None else int(t0_us)
        t1 = _INT64_MAX if t1_us is None else int(t1_us)
        if t1 < t0:
            raise ValueError(f"{self.path}: read_window needs t0_us <= t1_us, got [{t0}, {t1})")
        i0 = self.index_of_time(t0)
        i1 = self.index_of_time(t1) if t1 != _INT64_MAX else self.num_events
        return self._slice(i0, max(i0, i1))

    def read_count(self, i0: int, n: int) -> Events:
        """Events ``i0 .. i0 + n - 1`` (fewer at the end of the recording; empty past it)."""
        if i0 < 0 or n < 0:
            raise ValueError(f"{self.path}: read_count needs i0 >= 0 and n >= 0, got i0={i0}, n={n}")
        i0 = min(int(i0), self.num_events)
        return self._slice(i0, min(i0 + int(n), self.num_events))


class InMemoryRecording(EventRecording):
    """A recording whose format has no random access (``.bin``, text): loaded once, then sliced."""

    def __init__(self, path: PathLike, format: str, events: Events) -> None:
        self.events = events
        super().__init__(path, format, events.sensor_size, len(events))

    def _slice(self, i0: int, i1: int) -> Events:
        e = self.events
        return Events(e.x[i0:i1], e.y[i0:i1], e.t[i0:i1], e.p[i0:i1], e.sensor_size)

    def _t_at(self, i: int) -> int:
        return int(self.events.t[i])

    def _search(self, t_us: int) -> int:
        return int(np.searchsorted(self.events.t, t_us, side="left"))


def open_recording(path: PathLike, format: str | None = None, *, sensor_size: tuple[int, int] | None = None):
    """Open a recording for windowed reads (see `EventRecording`).

    Args:
        path: file (DSEC / MVSEC / N-Caltech / E2VID) or folder (DDD17-ESS).
        format: one of `EVENT_FORMATS`, or None to detect it from the path.
        sensor_size: (H, W) overriding the format's default (DSEC 480x640, DDD17/MVSEC 260x346, N-Caltech
            max + 1, E2VID its header).
    """
    fmt = _check_format(path, format)
    sensor_size = _check_sensor_size(sensor_size, f"open_recording({path})")
    p = Path(path)
    if fmt == "ddd17_ess":
        if not p.is_dir():
            raise EventFormatError(f"{p}: a DDD17-ESS recording must be a folder with events.dat.t / events.dat.xyp")
        return EssRecording(p, sensor_size or DAVIS346_SENSOR_SIZE)
    if not p.is_file():
        raise EventFormatError(f"{p}: no such file")
    if fmt == "dsec_h5":
        return DsecRecording(p, sensor_size or DSEC_SENSOR_SIZE)
    if fmt == "mvsec_h5":
        return MvsecRecording(p, sensor_size or DAVIS346_SENSOR_SIZE)
    if fmt == "ncaltech_bin":
        return InMemoryRecording(p, fmt, _read_ncaltech_bin(p, sensor_size))
    return InMemoryRecording(p, fmt, _read_e2vid_txt(p, sensor_size))


def read_events(
    path: PathLike,
    format: str | None = None,
    *,
    t_start_us: int | None = None,
    t_end_us: int | None = None,
    sensor_size: tuple[int, int] | None = None,
) -> Events:
    """Read the events of a file (or DDD17-ESS folder), optionally only those with ``t_start_us <= t < t_end_us``.

    Windowed reads of DSEC, MVSEC and DDD17-ESS recordings touch only the requested part of the file (DSEC through
    ``ms_to_idx``, MVSEC by bisection on the dataset, ESS through the memmaps). A window without events gives an
    empty `Events`.

    Args:
        path: the file or recording folder.
        format: one of `EVENT_FORMATS`; None detects it with `detect_format`.
        t_start_us, t_end_us: window bounds in absolute µs (None: unbounded).
        sensor_size: (H, W) overriding the format's default.

    Raises:
        EventFormatError: malformed file (truncated, missing datasets, wrong dtypes or shapes, unsorted timestamps,
            coordinates outside the sensor), naming the file.
    """
    with open_recording(path, format, sensor_size=sensor_size) as rec:
        if t_start_us is None and t_end_us is None:
            return rec.read_all()
        return rec.read_window(t_start_us, t_end_us)


def write_events(path: PathLike, events: Events, format: str | None = None, **options) -> Path:
    """Write `events` in one of `EVENT_FORMATS` (detected from `path` when None); returns the path written.

    Options per format:
        dsec_h5: ``t_offset`` (µs, default the first timestamp, or 0 when empty), ``compression`` (None,
            ``"zstd"`` for Blosc/ZSTD as in the official files (needs hdf5plugin), ``"gzip"`` or ``"lzf"``).
        mvsec_h5: ``camera`` ("left"), ``images`` (K, H, W) uint8 and ``image_timestamps_us`` (K,).
        ncaltech_bin: none (x, y must fit a byte, y != 240, t >= 0; overflow markers are inserted as needed).
        e2vid_txt: none (a ``.zip`` path writes a zip archive holding one ``.txt``).
        ddd17_ess: ``frame_timestamps_us`` (the frames the index files refer to; default every 50 ms after the
            first event up to the last).
    """
    if not isinstance(events, Events):
        raise TypeError(f"write_events({path}): events must be an Events, got {type(events).__name__}")
    fmt = _check_format(path, format)
    events.validate(f"write_events({path})")
    writer = {
        "dsec_h5": _write_dsec_h5,
        "mvsec_h5": _write_mvsec_h5,
        "ncaltech_bin": _write_ncaltech_bin,
        "e2vid_txt": _write_e2vid_txt,
        "ddd17_ess": _write_ddd17_ess,
    }[fmt]
    p = Path(path)
    if fmt != "ddd17_ess":
        p.parent.mkdir(parents=True, exist_ok=True)
    writer(p, events, **options)
    return p


# ----------------------------------------------------------------------------------------------------------------
# DSEC


def _h5_dataset(f, name: str, path: Path, *, ndim: int = 1, kind: str = "iu"):
    h5py = _import_h5py()
    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise EventFormatError(f"{path}: HDF5 file has no dataset {name!r}")
    ds = f[name]
    if ds.ndim != ndim:
        raise EventFormatError(f"{path}: dataset {name!r} must be {ndim}-D, got shape {ds.shape}")
    if ds.dtype.kind not in kind:
        raise EventFormatError(f"{path}: dataset {name!r} has dtype {ds.dtype}, expected kind {kind!r}")
    return ds


class DsecRecording(EventRecording):
    """A DSEC ``events.h5``; window reads use ``ms_to_idx`` to read only the needed chunk of ``events/t``."""

    def __init__(self, path: Path, sensor_size: tuple[int, int]) -> None:
        h5py = _import_h5py()
        try:
            self._file = h5py.File(path, "r")
        except OSError as err:
            raise EventFormatError(f"{path}: not a readable HDF5 file ({err})") from None
        try:
            f = self._file
            self._x, self._y, self._t, self._p = (_h5_dataset(f, f"events/{k}", path) for k in "xytp")
            n = self._t.shape[0]
            for name, ds in zip("xyp", (self._x, self._y, self._p)):
                if ds.shape[0] != n:
                    raise EventFormatError(f"{path}: events/{name} has {ds.shape[0]} entries, events/t has {n}")
            self._t_offset = int(_h5_dataset(f, "t_offset", path, ndim=0)[()]) if "t_offset" in f else 0
            # kept as a dataset: a window needs two of its entries, and an hour-long recording has 3.6 M of them
            self._ms_to_idx = _h5_dataset(f, "ms_to_idx", path) if "ms_to_idx" in f else None
            super().__init__(path, "dsec_h5", sensor_size, n)
        except Exception:
            self._file.close()
            raise

    def close(self) -> None:
        self._file.close()

    def _t_at(self, i: int) -> int:
        return int(self._t[i]) + self._t_offset

    def _search(self, t_us: int) -> int:
        rel = t_us - self._t_offset
        lo, hi = 0, self.num_events
        if self._ms_to_idx is not None and self._ms_to_idx.shape[0] > 0:
            m = self._ms_to_idx.shape[0]
            m_lo, m_hi = rel // 1000, -(-rel // 1000)
            # ms_to_idx[m] is the first event at or after m ms, so it brackets rel between floor / ceil ms.
            if m_lo >= 0:  # past the table, its last entry is still a lower bound
                lo = int(self._ms_to_idx[min(m_lo, m - 1)])
            if 0 <= m_hi < m:
                hi = int(self._ms_to_idx[m_hi])
            lo, hi = min(max(lo, 0), self.num_events), min(max(hi, 0), self.num_events)
            if hi < lo:
                raise EventFormatError(f"{self.path}: ms_to_idx is not non-decreasing")
            return lo + int(np.searchsorted(self._t[lo:hi].astype(np.int64), rel, side="left"))
        return _bisect_h5(self._t, rel, lo, hi, lambda v: int(v))

    def _slice(self, i0: int, i1: int) -> Events:
        t = self._t[i0:i1].astype(np.int64) + self._t_offset
        p = self._p[i0:i1]
        if p.size and p.max() > 1:
            raise EventFormatError(f"{self.path}: events/p must be 0 or 1, got values {np.unique(p)[:5]}")
        cd = _coord_dtype(self.sensor_size)
        x, y = self._x[i0:i1], self._y[i0:i1]
        if x.size and max(int(x.max()), int(y.max())) > np.iinfo(cd).max:
            raise EventFormatError(f"{self.path}: coordinates outside the sensor {self.sensor_size}")
        return _make_events(self.path, x.astype(cd), y.astype(cd), t, p.astype(np.int8) * 2 - 1, self.sensor_size)


def _bisect_h5(ds, value: float, lo: int, hi: int, key) -> int:
    """First index in [lo, hi) whose key(ds[i]) >= value, reading one element per step (sorted dataset)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if key(ds[mid]) < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _ms_to_idx(t_rel: np.ndarray) -> np.ndarray:
    last_ms = int(t_rel[-1]) // 1000 if len(t_rel) else -1
    return np.searchsorted(t_rel, np.arange(last_ms + 2, dtype=np.int64) * 1000, side="left").astype(np.uint64)


def _h5_compression(compression: str | None, path: Path) -> dict:
    if compression is None:
        return {}
    if compression == "zstd":
        try:
            import hdf5plugin
        except ImportError:
            raise ImportError(f"write_events({path}): compression='zstd' needs the hdf5plugin package") from None
        return dict(hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.SHUFFLE))
    if compression in ("gzip", "lzf"):
        return {"compression": compression}
    raise ValueError(f"write_events({path}): compression must be None, 'zstd', 'gzip' or 'lzf', got {compression!r}")


def _write_dsec_h5(path: Path, events: Events, *, t_offset: int | None = None, compression: str | None = None) -> None:
    h5py = _import_h5py()
    n = len(events)
    if t_offset is None:
        t_offset = int(events.t[0]) if n else 0
    t_rel = events.t - int(t_offset)
    if n and (t_rel[0] < 0 or t_rel[-1] > np.iinfo(np.uint32).max):
        raise EventFormatError(
            f"write_events({path}): t - t_offset must fit uint32 µs, got [{t_rel[0]}, {t_rel[-1]}] "
            f"(t_offset={t_offset})"
        )
    h, w = events.sensor_size
    if max(h, w) > np.iinfo(np.uint16).max:
        raise EventFormatError(f"write_events({path}): sensor {events.sensor_size} too large for uint16 coordinates")
    # Compression filters need chunked, non-empty datasets.
    filters = _h5_compression(compression, path) if n else {}
    chunk = {"chunks": (min(n, 1 << 16),)} if filters else {}
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        g.create_dataset("x", data=events.x.astype(np.uint16), **filters, **chunk)
        g.create_dataset("y", data=events.y.astype(np.uint16), **filters, **chunk)
        g.create_dataset("t", data=t_rel.astype(np.uint32), **filters, **chunk)
        g.create_dataset("p", data=(events.p > 0).astype(np.uint8), **filters, **chunk)
        f.create_dataset("ms_to_idx", data=_ms_to_idx(t_rel))
        f.create_dataset("t_offset", data=np.int64(t_offset))


# ----------------------------------------------------------------------------------------------------------------
# MVSEC


class MvsecRecording(EventRecording):
    """An MVSEC HDF5 file; window reads bisect on the time column, reading one row per step."""

    def __init__(self, path: Path, sensor_size: tuple[int, int], camera: str = "left") -> None:
        h5py = _import_h5py()
        try:
            self._file = h5py.File(path, "r")
        except OSError as err:
            raise EventFormatError(f"{path}: not a readable HDF5 file ({err})") from None
        try:
            self._ev = _h5_dataset(self._file, f"davis/{camera}/events", path, ndim=2, kind="f")
            if self._ev.shape[1] != 4:
                raise EventFormatError(f"{path}: davis/{camera}/events must have 4 columns, got {self._ev.shape}")
            super().__init__(path, "mvsec_h5", sensor_size, self._ev.shape[0])
            self._open_images(camera)
        except Exception:
            self._file.close()
            raise

    def close(self) -> None:
        self._file.close()

    @property
    def num_images(self) -> int:
        """Number of APS frames (``image_raw``); 0 when the file has none."""
        return 0 if self._images is None else int(self._images.shape[0])

    def image_timestamps_us(self) -> np.ndarray:
        """(K,) int64 µs readout times of the APS frames (``image_raw_ts`` in seconds, rounded as event times)."""
        if self._images is None:
            return np.zeros(0, dtype=np.int64)
        return np.rint(self._image_ts[:] * 1e6).astype(np.int64)

    def read_image(self, k: int) -> np.ndarray:
        """(H, W) uint8 APS frame `k` of ``image_raw``."""
        if not 0 <= int(k) < self.num_images:
            raise IndexError(f"{self.path}: APS frame {k} out of range (the file has {self.num_images})")
        return np.asarray(self._images[int(k)])

    def _open_images(self, camera: str) -> None:
        """Validate ``image_raw`` / ``image_raw_ts`` / ``image_raw_event_inds`` when the file has APS frames."""
        group = self._file[f"davis/{camera}"]
        self._images = self._image_ts = None
        if "image_raw" not in group:
            return
        images = group["image_raw"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise EventFormatError(f"{self.path}: davis/{camera}/image_raw must be uint8 (K, H, W), got "
                                   f"{images.dtype} {images.shape}")  # fmt: skip
        if tuple(images.shape[1:]) != tuple(self.sensor_size):
            raise EventFormatError(
                f"{self.path}: davis/{camera}/image_raw frames are {tuple(images.shape[1:])}, the sensor is "
                f"{self.sensor_size} (pass sensor_size=)"
            )
        for name in ("image_raw_ts", "image_raw_event_inds"):
            ds = group.get(name)
            if ds is None or ds.shape != (images.shape[0],):
                got = None if ds is None else ds.shape
                raise EventFormatError(f"{self.path}: davis/{camera}/{name} must be ({images.shape[0]},), got {got}")
        self._images, self._image_ts = images, group["image_raw_ts"]

    def _t_at(self, i: int) -> int:
        return int(np.rint(self._ev[i, 2] * 1e6))

    def _search(self, t_us: int) -> int:
        # Compare in µs after rounding, as `_slice` does, so window bounds agree with the returned timestamps.
        return _bisect_h5(self._ev, t_us, 0, self.num_events, lambda row: int(np.rint(row[2] * 1e6)))

    def _slice(self, i0: int, i1: int) -> Events:
        rows = self._ev[i0:i1]  # (n, 4)
        x, y, t_s, p = rows.T
        if not (np.all(x == np.rint(x)) and np.all(y == np.rint(y))):
            raise EventFormatError(f"{self.path}: event coordinates are not integers")
        if not np.all((p == 1) | (p == -1)):
            raise EventFormatError(f"{self.path}: polarity must be -1 or +1, got values {np.unique(p)[:5]}")
        if x.size and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) > np.iinfo(np.int32).max):
            raise EventFormatError(f"{self.path}: coordinates outside the sensor {self.sensor_size}")
        cd = _coord_dtype(self.sensor_size)
        coords_ok = not x.size or max(x.max(), y.max()) <= np.iinfo(cd).max
        cd = cd if coords_ok else np.int32
        t = np.rint(t_s * 1e6).astype(np.int64)
        return _make_events(self.path, x.astype(cd), y.astype(cd), t, p.astype(np.int8), self.sensor_size)


def read_mvsec_frames(
    path: PathLike, *, camera: str = "left", sensor_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The APS frames of an MVSEC HDF5 file: ``image_raw`` (K, H, W) uint8, their timestamps in µs (K,) int64 and
    ``image_raw_event_inds`` (K,) int64 (the index of the first event at or after each frame).

    Raises:
        EventFormatError: not an MVSEC file, no ``image_raw``, or inconsistent shapes, naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise EventFormatError(f"{p}: no such file")
    sensor_size = _check_sensor_size(sensor_size, f"read_mvsec_frames({p})")
    with MvsecRecording(p, sensor_size or DAVIS346_SENSOR_SIZE, camera) as rec:
        if rec.num_images == 0:
            raise EventFormatError(f"{p}: davis/{camera} has no image_raw (APS frames)")
        inds = np.asarray(rec._file[f"davis/{camera}/image_raw_event_inds"][:], dtype=np.int64)
        return np.asarray(rec._images[:]), rec.image_timestamps_us(), inds


def _write_mvsec_h5(
    path: Path,
    events: Events,
    *,
    camera: str = "left",
    images: np.ndarray | None = None,
    image_timestamps_us: np.ndarray | None = None,
) -> None:
    h5py = _import_h5py()
    rows = np.stack(
        [events.x.astype(np.float64), events.y.astype(np.float64), events.t / 1e6, events.p.astype(np.float64)], 1
    )  # (N, 4)
    with h5py.File(path, "w") as f:
        g = f.create_group(f"davis/{camera}")
        g.create_dataset("events", data=rows.reshape(-1, 4))
        if (images is None) != (image_timestamps_us is None):
            raise ValueError(f"write_events({path}): pass both images and image_timestamps_us, or neither")
        if images is not None:
            images = np.asarray(images)
            ts = np.asarray(image_timestamps_us, dtype=np.int64)
            if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1:] != events.sensor_size:
                raise ValueError(
                    f"write_events({path}): images must be uint8 (K, {events.sensor_size[0]}, "
                    f"{events.sensor_size[1]}), got {images.dtype} {images.shape}"
                )
            if ts.shape != (images.shape[0],):
                raise ValueError(f"write_events({path}): image_timestamps_us must be ({images.shape[0]},)")
            if np.any(np.diff(ts) <= 0):
                raise ValueError(f"write_events({path}): image_timestamps_us must be strictly increasing")
            g.create_dataset("image_raw", data=images)
            g.create_dataset("image_raw_ts", data=ts / 1e6)
            g.create_dataset("image_raw_event_inds", data=np.searchsorted(events.t, ts).astype(np.int64))


# ----------------------------------------------------------------------------------------------------------------
# N-Caltech101 .bin


def _read_ncaltech_bin(path: Path, sensor_size: tuple[int, int] | None) -> Events:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise EventFormatError(f"{path}: truncated N-Caltech .bin ({raw.size} bytes is not a multiple of 5)")
    rec = raw.reshape(-1, 5).astype(np.int64)  # (N + markers, 5)
    x, y = rec[:, 0], rec[:, 1]
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    overflow = y == _NCALTECH_OVERFLOW_Y
    # Each marker shifts every later event; a marker's own shift does not matter since it is dropped.
    t = t + np.cumsum(overflow) * _NCALTECH_OVERFLOW_US
    keep = ~overflow
    x, y, t = x[keep], y[keep], t[keep]
    p = np.where(rec[keep, 2] >> 7, 1, -1).astype(np.int8)
    if sensor_size is None:
        sensor_size = (int(y.max()) + 1, int(x.max()) + 1) if x.size else (1, 1)
    return _make_events(path, x.astype(np.int16), y.astype(np.int16), t, p, sensor_size)


def _write_ncaltech_bin(path: Path, events: Events) -> None:
    x, y, t = events.x.astype(np.int64), events.y.astype(np.int64), events.t
    n = len(events)
    if n and (x.max() > 255 or y.max() > 255):
        raise EventFormatError(f"write_events({path}): N-Caltech .bin stores x, y in one byte each (< 256)")
    if np.any(y == _NCALTECH_OVERFLOW_Y):
        raise EventFormatError(f"write_events({path}): y == 240 is the .bin overflow marker and cannot be an event")
    if n and t[0] < 0:
        raise EventFormatError(f"write_events({path}): N-Caltech timestamps must be >= 0, got {t[0]}")
    # Markers needed before each event so that its remaining timestamp fits 23 bits (non-decreasing since t is).
    k = np.maximum(0, -(-(t - _NCALTECH_MAX_T) // _NCALTECH_OVERFLOW_US))  # (N,) ceil division
    total = n + (int(k[-1]) if n else 0)
    out = np.zeros((total, 5), dtype=np.uint8)  # markers: x = 0, y = 240, t = 0
    out[:, 1] = _NCALTECH_OVERFLOW_Y
    pos = np.arange(n) + k
    tt = t - k * _NCALTECH_OVERFLOW_US
    out[pos, 0] = x
    out[pos, 1] = y
    out[pos, 2] = ((events.p > 0).astype(np.int64) << 7) | (tt >> 16)
    out[pos, 3] = (tt >> 8) & 0xFF
    out[pos, 4] = tt & 0xFF
    out.tofile(path)


# ----------------------------------------------------------------------------------------------------------------
# E2VID text


def _read_e2vid_txt(path: Path, sensor_size: tuple[int, int] | None) -> Events:
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if not m.endswith("/")]
                txt = [m for m in members if m.lower().endswith(".txt")] or members
                if not txt:
                    raise EventFormatError(f"{path}: zip archive holds no file")
                data = zf.read(txt[0])
        except zipfile.BadZipFile as err:
            raise EventFormatError(f"{path}: not a zip archive ({err})") from None
    else:
        data = path.read_bytes()
    header, _, body = data.partition(b"\n")
    try:
        width, height = (int(v) for v in header.split())
    except ValueError:
        raise EventFormatError(f"{path}: first line must be 'width height', got {header[:60]!r}") from None
    try:
        values = np.array(body.split(), dtype=np.float64)
    except ValueError as err:
        raise EventFormatError(f"{path}: non-numeric event line ({err})") from None
    if values.size % 4:
        raise EventFormatError(f"{path}: event lines must have 4 values 't x y p' ({values.size} values in all)")
    t_s, x, y, p = values.reshape(-1, 4).T
    if not (np.all(x == np.rint(x)) and np.all(y == np.rint(y))):
        raise EventFormatError(f"{path}: event coordinates are not integers")
    if not np.all((p == 0) | (p == 1)):
        raise EventFormatError(f"{path}: polarity must be 0 or 1, got values {np.unique(p)[:5]}")
    size = sensor_size or (height, width)
    if x.size and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) >= max(size)):
        raise EventFormatError(f"{path}: coordinates outside the {size[1]}x{size[0]} (W x H) sensor")
    cd = _coord_dtype(size)
    t = np.rint(t_s * 1e6).astype(np.int64)
    return _make_events(path, x.astype(cd), y.astype(cd), t, (p * 2 - 1).astype(np.int8), size)


def _write_e2vid_txt(path: Path, events: Events) -> None:
    h, w = events.sensor_size
    buf = io.StringIO()
    buf.write(f"{w} {h}\n")
    # µs are written as exact decimal seconds so that a round trip is lossless.
    t = events.t
    secs, micros = np.divmod(t, 1_000_000)
    cols = np.stack([secs, micros, events.x.astype(np.int64), events.y.astype(np.int64), (events.p > 0)], 1)
    np.savetxt(buf, cols.astype(np.int64), fmt="%d.%06d %d %d %d")
    text = buf.getvalue().encode()
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(path.stem + ".txt", text)
    else:
        path.write_bytes(text)


# ----------------------------------------------------------------------------------------------------------------
# DDD17 in the ESS layout


class EssRecording(EventRecording):
    """A DDD17-ESS recording folder; reads go through the memmaps, so a window costs only its own events."""

    def __init__(self, path: Path, sensor_size: tuple[int, int]) -> None:
        t_file, xyp_file = path / "events.dat.t", path / "events.dat.xyp"
        for f in (t_file, xyp_file):
            if not f.is_file():
                raise EventFormatError(f"{path}: DDD17-ESS recording has no {f.name}")
        t_bytes, xyp_bytes = t_file.stat().st_size, xyp_file.stat().st_size
        if t_bytes % 8:
            raise EventFormatError(f"{t_file}: size {t_bytes} is not a multiple of 8 (int64 ns timestamps)")
        n = t_bytes // 8
        if xyp_bytes != n * 6:
            raise EventFormatError(
                f"{xyp_file}: size {xyp_bytes} bytes does not match {n} events of 3 int16 (expected {n * 6})"
            )
        if n:
            self._t = np.memmap(t_file, dtype=np.int64, mode="r", shape=(n,))
            self._xyp = np.memmap(xyp_file, dtype=np.int16, mode="r", shape=(n, 3))
        else:  # mmap cannot map an empty file
            self._t, self._xyp = np.zeros(0, np.int64), np.zeros((0, 3), np.int16)
        super().__init__(path, "ddd17_ess", sensor_size, n)

    def close(self) -> None:
        self._t = self._xyp = None

    def _t_at(self, i: int) -> int:
        return int(self._t[i]) // 1000

    def _search(self, t_us: int) -> int:
        # floor(t_ns / 1000) >= t_us  <=>  t_ns >= 1000 t_us
        return int(np.searchsorted(self._t, t_us * 1000, side="left"))

    def _slice(self, i0: int, i1: int) -> Events:
        xyp = np.asarray(self._xyp[i0:i1])  # (n, 3)
        p = xyp[:, 2]
        if not np.all((p == 0) | (p == 1)):
            raise EventFormatError(f"{self.path}: events.dat.xyp polarity must be 0 or 1, got {np.unique(p)[:5]}")
        t = np.asarray(self._t[i0:i1]) // 1000
        return _make_events(
            self.path, xyp[:, 0].copy(), xyp[:, 1].copy(), t, (p * 2 - 1).astype(np.int8), self.sensor_size
        )

    def frame_index(self, window_ms: int) -> np.ndarray:
        """The (K, 3) int64 rows ``(t_ns, idx, idx_before)`` of ``index/index_{window_ms}ms.npy``."""
        f = self.path / "index" / f"index_{int(window_ms)}ms.npy"
        if not f.is_file():
            raise EventFormatError(f"{self.path}: no index file index/{f.name}")
        rows = np.load(f)
        if rows.ndim != 2 or rows.shape[1] != 3 or rows.dtype.kind not in "iu":
            raise EventFormatError(f"{f}: index rows must be integer (K, 3), got {rows.dtype} {rows.shape}")
        return rows.astype(np.int64)

    def read_frame_window(self, frame: int, window_ms: int) -> Events:
        """The events of frame `frame`'s index row: ``[t_ns - window_ms, t_ns)`` as stored in the index file."""
        rows = self.frame_index(window_ms)
        if not 0 <= frame < len(rows):
            raise IndexError(f"{self.path}: frame {frame} out of range for {len(rows)} index rows")
        _, idx, idx_before = (int(v) for v in rows[frame])
        if not 0 <= idx_before <= idx <= self.num_events:
            raise EventFormatError(f"{self.path}: index row {frame} ({idx_before}, {idx}) outside the recording")
        return self._slice(idx_before, idx)


def _write_ddd17_ess(path: Path, events: Events, *, frame_timestamps_us: np.ndarray | None = None) -> None:
    if path.exists() and not path.is_dir():
        raise EventFormatError(f"write_events({path}): a DDD17-ESS recording is a folder, and this is a file")
    (path / "index").mkdir(parents=True, exist_ok=True)
    t_ns = events.t * 1000
    t_ns.astype(np.int64).tofile(path / "events.dat.t")
    xyp = np.stack([events.x, events.y, (events.p > 0)], 1).astype(np.int16)  # (N, 3)
    xyp.tofile(path / "events.dat.xyp")
    if frame_timestamps_us is None:
        if len(events):
            frame_timestamps_us = np.arange(events.t[0] + 50_000, events.t[-1] + 1, 50_000, dtype=np.int64)
        else:
            frame_timestamps_us = np.zeros(0, np.int64)
    frames_ns = np.asarray(frame_timestamps_us, dtype=np.int64).reshape(-1) * 1000
    for window_ms in ESS_INDEX_WINDOWS_MS:
        idx = np.searchsorted(t_ns, frames_ns, side="left")
        idx_before = np.searchsorted(t_ns, frames_ns - window_ms * 1_000_000, side="left")
        np.save(
            path / "index" / f"index_{window_ms}ms.npy", np.stack([frames_ns, idx, idx_before], 1).astype(np.int64)
        )
