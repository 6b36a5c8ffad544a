"""The event container shared by every reader, writer, representation and simulator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class EventFormatError(ValueError):
    """Malformed event data. The message names the file (or the argument) and what is wrong with it."""


@dataclass
class Events:
    """A stream of events from one sensor, sorted by time.

    Attributes:
        x: (N,) int column index, 0 <= x < W.
        y: (N,) int row index, 0 <= y < H.
        t: (N,) int64 timestamps in microseconds, non-decreasing.
        p: (N,) int8 polarity in {-1, +1}.
        sensor_size: (H, W) of the sensor.
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    sensor_size: tuple[int, int]

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x)
        self.y = np.asarray(self.y)
        self.t = np.asarray(self.t)
        self.p = np.asarray(self.p)
        self.validate()

    def validate(self, where: str = "Events") -> None:
        """Check shapes, dtypes, ranges and time order; raise `EventFormatError` naming `where`."""
        if len(self.sensor_size) != 2 or min(int(s) for s in self.sensor_size) <= 0:
            raise EventFormatError(f"{where}: sensor_size must be (H, W) with positive sizes, got {self.sensor_size}")
        self.sensor_size = (int(self.sensor_size[0]), int(self.sensor_size[1]))
        n = self.x.shape[0] if self.x.ndim == 1 else -1
        for name in ("x", "y", "t", "p"):
            arr = getattr(self, name)
            if arr.ndim != 1 or arr.shape[0] != n:
                raise EventFormatError(
                    f"{where}: field {name!r} must be 1-D with the same length as x ({n}), got shape {arr.shape}"
                )
            if not np.issubdtype(arr.dtype, np.integer):
                raise EventFormatError(f"{where}: field {name!r} must be integer, got dtype {arr.dtype}")
        if self.t.dtype != np.int64:
            self.t = self.t.astype(np.int64)
        if self.p.dtype != np.int8:
            self.p = self.p.astype(np.int8)
        if n == 0:
            return
        h, w = self.sensor_size
        if self.x.min() < 0 or self.x.max() >= w or self.y.min() < 0 or self.y.max() >= h:
            raise EventFormatError(
                f"{where}: coordinates outside the {w}x{h} (W x H) sensor: x in [{self.x.min()}, {self.x.max()}], "
                f"y in [{self.y.min()}, {self.y.max()}]"
            )
        if not np.all((self.p == 1) | (self.p == -1)):
            raise EventFormatError(f"{where}: polarity must be -1 or +1, got values {np.unique(self.p)[:5]}")
        if np.any(np.diff(self.t) < 0):
            first = int(np.argmax(np.diff(self.t) < 0))
            raise EventFormatError(f"{where}: timestamps are not sorted (t[{first}] > t[{first + 1}])")

    @classmethod
    def empty(cls, sensor_size: tuple[int, int]) -> Events:
        """No events on a sensor of `sensor_size` (H, W); what a window without events reads as."""
        zeros = np.zeros(0, dtype=np.int16)
        return cls(zeros, zeros.copy(), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8), sensor_size)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def slice_time(self, t_start_us: int, t_end_us: int) -> Events:
        """Events with t_start_us <= t < t_end_us (binary search on the sorted timestamps)."""
        i0, i1 = np.searchsorted(self.t, [t_start_us, t_end_us], side="left")
        return Events(self.x[i0:i1], self.y[i0:i1], self.t[i0:i1], self.p[i0:i1], self.sensor_size)
