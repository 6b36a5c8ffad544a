"""`make_synthetic_mvsec`: deterministic, validated, and its sidecar labels match the APS frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fixtures_events import TINY_MVSEC

from hf_crossdistill.data.events import read_events
from hf_crossdistill.data.events.formats import read_mvsec_frames
from hf_crossdistill.data.synthetic.event_worlds import MVSEC_LABELS_DIR, make_synthetic_mvsec

SMALL = {"num_recordings": 1, "duration_s": 0.12, "sensor_size": (52, 70), "render_fps": 100.0}

# Run in a fresh interpreter: argv = out_dir, kwargs (JSON), stir (0/1). Stirring keeps a changing set of
# random-sized blocks alive between frames, so that this process's heap differs from the other one's (numpy picked
# its SIMD or scalar arctan2 loop from where the output landed, and the 1-ulp difference moved event timestamps).
_GENERATE = """
import json, sys
import numpy as np
from hf_crossdistill.data.synthetic import event_worlds
out_dir, kwargs, stir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "1"
if stir:
    render, rng, kept = event_worlds.render_driving_frame, np.random.default_rng(1), []
    def stirred(*args, **kw):
        kept.append([np.empty(int(n), np.uint8) for n in rng.integers(1, 400_000, rng.integers(1, 6))])
        if len(kept) > 20:
            kept.pop(int(rng.integers(0, 20)))
        return render(*args, **kw)
    event_worlds.render_driving_frame = stirred
event_worlds.make_synthetic_mvsec(out_dir, **kwargs)
"""


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


def _start_generator(out_dir, threads: int, hash_seed: int, stir: bool, cwd) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    args = [sys.executable, "-c", _GENERATE, str(out_dir), json.dumps(TINY_MVSEC), str(int(stir))]
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_bit_identical_across_processes_and_thread_counts(tmp_path, repo_root):
    procs = {
        "a": _start_generator(tmp_path / "a", threads=1, hash_seed=0, stir=False, cwd=repo_root),
        "b": _start_generator(tmp_path / "b", threads=2, hash_seed=12345, stir=True, cwd=repo_root),
    }
    try:
        for name, proc in procs.items():
            _, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"generator subprocess {name} failed:\n{stderr[-3000:]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*_data.hdf5"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*_data.hdf5"))
    assert files_a == files_b and len(files_a) == TINY_MVSEC["num_recordings"]
    for rel in files_a:
        ea, eb = (read_events(tmp_path / r / rel, sensor_size=TINY_MVSEC["sensor_size"]) for r in ("a", "b"))
        assert len(ea) > 10_000, f"{rel}: too few events ({len(ea)}) for a meaningful comparison"
        for name in ("x", "y", "t", "p"):
            a, b = getattr(ea, name), getattr(eb, name)
            assert a.shape == b.shape, f"{rel}: {len(ea)} vs {len(eb)} events"
            diff = np.flatnonzero(a != b)
            assert diff.size == 0, (
                f"{rel}: {name} differs at {diff.size} events, first {diff[:5]}: {a[diff[:5]]} vs {b[diff[:5]]}"
            )
