"""`make_synthetic_mvsec`: deterministic, validated, and its sidecar labels match the APS frames."""

from __future__ import annotations

import numpy as np
import pytest

from hf_crossdistill.data.events import read_events
from hf_crossdistill.data.events.formats import read_mvsec_frames
from hf_crossdistill.data.synthetic.event_worlds import MVSEC_LABELS_DIR, make_synthetic_mvsec

SMALL = {"num_recordings": 1, "duration_s": 0.12, "sensor_size": (52, 70), "render_fps": 100.0}


def test_deterministic_by_seed_and_optional_labels(tmp_path):
    a = make_synthetic_mvsec(tmp_path / "a", seed=3, **SMALL)
    b = make_synthetic_mvsec(tmp_path / "b", seed=3, with_labels=False, **SMALL)
    c = make_synthetic_mvsec(tmp_path / "c", seed=4, **SMALL)
    ea, eb, ec = (read_events(r / "train" / "rec_000_data.hdf5", sensor_size=(52, 70)) for r in (a, b, c))
    np.testing.assert_array_equal(ea.t, eb.t)
    assert len(ea) != len(ec) or not np.array_equal(ea.x, ec.x)
    assert (a / MVSEC_LABELS_DIR).is_dir() and not (b / MVSEC_LABELS_DIR).exists()
    images, ts, _ = read_mvsec_frames(a / "train" / "rec_000_data.hdf5", sensor_size=(52, 70))
    assert images.shape == (3, 52, 70) and len(ts) == 3


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="duration_s"):
        make_synthetic_mvsec(tmp_path / "x", duration_s=0)
    with pytest.raises(ValueError, match="time_origin_s"):
        make_synthetic_mvsec(tmp_path / "x", time_origin_s=-1.0)
    with pytest.raises(ValueError, match="sensor_size"):
        make_synthetic_mvsec(tmp_path / "x", sensor_size=(4, 4))
    assert not (tmp_path / "x").exists()
    make_synthetic_mvsec(tmp_path / "y", **SMALL)
    with pytest.raises(FileExistsError):
        make_synthetic_mvsec(tmp_path / "y", **SMALL)
