"""Session fixtures: tiny synthetic event recordings (owned by the event simulator / worlds).

Each builds in about a second on one core, in the real on-disk layouts:

- `tiny_ddd17_root`: DDD17-ESS, 2 recordings (``train/rec_000``, ``test/rec_001``) of 0.4 s on a 104 x 138 sensor
  (0.4 x DAVIS346), 10 labeled APS frames each at 25 Hz, labels (6 classes) on the top 80 rows.
- `tiny_dsec_root`: DSEC, 2 sequences (``train/seq_000``, ``test/seq_001``) of 0.3 s on a 96 x 128 sensor,
  6 labels each at 20 Hz (11 classes).
- `tiny_mvsec_root`: MVSEC, 2 ``*_data.hdf5`` files (``train/rec_000``, ``test/rec_001``) of 0.24 s at the real
  DAVIS346 resolution 260 x 346, 6 APS frames each at 25 Hz, plus the generator's sidecar labels in
  ``synthetic_labels/`` (not part of MVSEC).
- `tiny_source_images_root`: 8 labeled RGB driving images 64 x 128 in the source style (``train`` 7, ``val`` 1).
- `tiny_ncaltech_root`: 3 classes x 4 ``.bin`` samples, 60 x 80 sensor, three 30 ms saccades.
- `tiny_recognition_source_root`: the same 3 classes x 4 labeled RGB images 60 x 80 in another style.

Treat them as read-only: they are shared by every test of the session.
"""

from __future__ import annotations

import pytest

from hf_crossdistill.data.synthetic.event_worlds import (
    make_recognition_source_images,
    make_source_images,
    make_synthetic_ddd17,
    make_synthetic_dsec,
    make_synthetic_mvsec,
    make_synthetic_ncaltech,
)

TINY_DDD17 = {"num_recordings": 2, "duration_s": 0.4, "sensor_size": (104, 138), "render_fps": 100.0, "seed": 0}
TINY_DSEC = {"num_recordings": 2, "duration_s": 0.3, "sensor_size": (96, 128), "render_fps": 100.0, "seed": 0}
TINY_MVSEC = {"num_recordings": 2, "duration_s": 0.24, "sensor_size": (260, 346), "render_fps": 100.0, "seed": 0}
TINY_SOURCE = {"num_images": 8, "image_size": (64, 128), "seed": 0, "val_fraction": 0.125}
TINY_NCALTECH = {
    "num_classes": 3, "samples_per_class": 4, "sensor_size": (60, 80), "saccade_ms": 30.0, "render_fps": 500.0,
    "amplitude_px": 3.0, "seed": 0,
}  # fmt: skip
TINY_RECOGNITION_SOURCE = {"num_classes": 3, "samples_per_class": 4, "image_size": (60, 80), "seed": 0}


@pytest.fixture(scope="session")
def tiny_ddd17_root(tmp_path_factory):
    return make_synthetic_ddd17(tmp_path_factory.mktemp("events") / "ddd17", **TINY_DDD17)


@pytest.fixture(scope="session")
def tiny_dsec_root(tmp_path_factory):
    return make_synthetic_dsec(tmp_path_factory.mktemp("events") / "dsec", **TINY_DSEC)


@pytest.fixture(scope="session")
def tiny_mvsec_root(tmp_path_factory):
    return make_synthetic_mvsec(tmp_path_factory.mktemp("events") / "mvsec", **TINY_MVSEC)


@pytest.fixture(scope="session")
def tiny_source_images_root(tmp_path_factory):
    return make_source_images(tmp_path_factory.mktemp("events") / "source_images", **TINY_SOURCE)


@pytest.fixture(scope="session")
def tiny_ncaltech_root(tmp_path_factory):
    return make_synthetic_ncaltech(tmp_path_factory.mktemp("events") / "ncaltech", **TINY_NCALTECH)


@pytest.fixture(scope="session")
def tiny_recognition_source_root(tmp_path_factory):
    return make_recognition_source_images(
        tmp_path_factory.mktemp("events") / "recognition_source", **TINY_RECOGNITION_SOURCE
    )
