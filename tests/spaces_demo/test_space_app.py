"""The Gradio Space in spaces_demo/: both endpoints through a real server and gradio_client, bad inputs, the README
front matter, and (marker `browser`) the page in headless Chromium."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from testing_utils import load_script

from hf_crossdistill.data.events import Events, read_events, write_events
from hf_crossdistill.visualization import DDD17_PALETTE, render_event_frame

REPO_ROOT = Path(__file__).resolve().parents[2]
SPACE_DIR = REPO_ROOT / "spaces_demo"
TINY_DDD17_SENSOR = (104, 138)  # tests/fixtures_events.py TINY_DDD17
CHROMIUM = Path("/usr/bin/chromium")


def _load_app():
    return load_script(SPACE_DIR / "app.py", "hf_crossdistill_space_app")


@pytest.fixture(scope="module")
def app():
    return _load_app()


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory, tiny_nuscenes_root, tiny_ddd17_root) -> Path:
    """The demo's cache layout pointing at the session's tiny synthetic datasets (nothing is generated)."""
    root = tmp_path_factory.mktemp("space_examples")
    (root / "nuscenes").symlink_to(tiny_nuscenes_root, target_is_directory=True)
    (root / "ddd17").symlink_to(tiny_ddd17_root, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def bev_checkpoint(tmp_path_factory, app) -> Path:
    """A tiny pillar detector saved with save_pretrained: the demo loads it through AutoModel*.from_pretrained."""
    from transformers import AutoConfig, AutoModelForObjectDetection

    config = AutoConfig.from_pretrained(REPO_ROOT / "hub_configs/models/bev_lidar_pillar_nuscenes_tiny.json")
    torch.manual_seed(1)
    model = AutoModelForObjectDetection.from_config(config)
    folder = tmp_path_factory.mktemp("bev_checkpoint") / "tiny_pillar"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served(app, examples_dir, bev_checkpoint, tmp_path_factory):
    """(client, url, examples) of the demo running on 127.0.0.1."""
    from gradio_client import Client

    demo = app.build_demo(bev_model=bev_checkpoint, event_model=None, examples_dir=examples_dir)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        downloads = tmp_path_factory.mktemp("client_downloads")
        client = Client(demo.local_url, verbose=False, download_files=str(downloads), analytics_enabled=False)
        yield client, demo.local_url, app.prepare_examples(examples_dir)
    finally:
        demo.close()


def _png(path) -> Image.Image:
    assert path is not None and Path(path).is_file(), f"no image file: {path!r}"
    image = Image.open(path)
    assert image.format == "PNG"
    image.load()
    return image


def _segment(client, *, example=None, files=(), fmt="auto", sensor_size="", start=0.0, window=50.0,
             representation="normalized_count", input_size="", model=""):  # fmt: skip
    from gradio_client import handle_file

    return client.predict(
        example, [handle_file(str(f)) for f in files], fmt, sensor_size, start, window, representation, input_size,
        model, api_name="/segment",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# BEV detection
# ---------------------------------------------------------------------------------------------------------------


def test_detect_synthetic_sample_matches_the_model(served, app, bev_checkpoint, tiny_nuscenes_root):
    from nuscenes.utils.splits import mini_train
    from transformers import AutoModelForObjectDetection

    from hf_crossdistill.data.nuscenes import NUSCENES_CLASSES, collate_bev_batch, nuscenes_detection_dataset

    client, _, examples = served
    label = next(iter(examples.nuscenes_samples))
    image, table, status = client.predict(label, None, str(bev_checkpoint), 0.0, 20, api_name="/detect")

    assert _png(image).size == (app.BEV_PLOT_SIZE, app.BEV_PLOT_SIZE)
    assert table["headers"] == app.DETECTION_COLUMNS
    rows = table["data"]
    assert len(rows) == 20
    assert all(row[0] in NUSCENES_CLASSES for row in rows)
    assert "ground-truth boxes" in status and str(bev_checkpoint) in status and "untrained" not in status

    # The same key frame through the package's own loader and the checkpoint: the table holds its top-20 boxes.
    model = AutoModelForObjectDetection.from_pretrained(bev_checkpoint).eval()
    token = examples.nuscenes_samples[label]
    scene = label.split(" · ")[0]
    split = "mini_train" if scene in mini_train else "mini_val"
    dataset = nuscenes_detection_dataset(
        tiny_nuscenes_root, "v1.0-mini", split, num_sweeps=model.config.num_sweeps, cameras=(),
        point_cloud_range=model.config.point_cloud_range,
    )  # fmt: skip
    sample = next(s for s in dataset if s["sample_token"] == token)
    batch = collate_bev_batch([sample])
    with torch.no_grad():
        result = model.post_process(model(points=batch["points"], batch_size=1), score_threshold=0.0)[0]
    order = torch.argsort(result["scores"], descending=True)[:20]
    expected = torch.cat([result["scores"][order, None], result["boxes"][order]], dim=1).numpy()  # (20, 10)
    got = np.array([row[1:] for row in rows], dtype=np.float64)  # score, x, y, z, l, w, h, yaw, vx, vy
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert [row[0] for row in rows] == [NUSCENES_CLASSES[k] for k in result["labels"][order].tolist()]


def test_detect_uploaded_pcd_bin(served, app, tiny_nuscenes_root, tmp_path):
    from gradio_client import handle_file

    client, _, _ = served
    source = sorted((tiny_nuscenes_root / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))[0]
    upload = tmp_path / "my_scan.pcd.bin"
    shutil.copyfile(source, upload)
    image, table, status = client.predict(None, handle_file(str(upload)), "", 0.0, 5, api_name="/detect")
    assert _png(image).size == (app.BEV_PLOT_SIZE, app.BEV_PLOT_SIZE)
    assert table["headers"] == app.DETECTION_COLUMNS and len(table["data"]) == 5
    assert "my_scan.pcd.bin" in status and "ground-truth" not in status
    assert app.UNTRAINED_LABEL in status  # the empty model textbox means the labelled random demo weights


def test_detect_bad_pcd_bin_gives_a_clear_message(served, tmp_path):
    from gradio_client import handle_file

    client, _, _ = served
    bad = tmp_path / "broken.pcd.bin"
    bad.write_bytes(b"\x00" * 30)  # 1.5 points
    image, table, status = client.predict(None, handle_file(str(bad)), "", 0.1, 50, api_name="/detect")
    assert image is None
    assert all(not any(str(v) for v in row) for row in table["data"])  # no detection rows
    assert "Error" in status and "broken.pcd.bin" in status and "30 bytes" in status and "20 bytes" in status
    assert "Traceback" not in status


def test_detect_with_a_non_detector_checkpoint_gives_a_clear_message(served, tmp_path):
    from transformers import AutoConfig, AutoModelForSemanticSegmentation

    client, _, examples = served
    config = AutoConfig.from_pretrained(REPO_ROOT / "hub_configs/models/deeplabv3plus_tiny_events.json")
    AutoModelForSemanticSegmentation.from_config(config).save_pretrained(tmp_path / "deeplab")
    label = next(iter(examples.nuscenes_samples))
    image, _, status = client.predict(label, None, str(tmp_path / "deeplab"), 0.1, 10, api_name="/detect")
    assert image is None
    assert "could not load a BEV detector" in status and "Traceback" not in status


def test_detect_with_a_camera_detector(served, app, tmp_path, tiny_nuscenes_root):
    from gradio_client import handle_file
    from transformers import AutoConfig, AutoModelForObjectDetection

    client, _, examples = served
    config = AutoConfig.from_pretrained(REPO_ROOT / "hub_configs/models/bev_camera_nuscenes_tiny.json")
    AutoModelForObjectDetection.from_config(config).save_pretrained(tmp_path / "camera")
    label = next(iter(examples.nuscenes_samples))
    image, table, status = client.predict(label, None, str(tmp_path / "camera"), 0.0, 7, api_name="/detect")
    assert _png(image).size == (app.BEV_PLOT_SIZE, app.BEV_PLOT_SIZE) and len(table["data"]) == 7
    assert "Error" not in status, status
    scan = sorted((tiny_nuscenes_root / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))[0]
    image, _, status = client.predict(
        None, handle_file(str(scan)), str(tmp_path / "camera"), 0.1, 7, api_name="/detect"
    )
    assert image is None and "LiDAR-only" in status


# ---------------------------------------------------------------------------------------------------------------
# Event segmentation
# ---------------------------------------------------------------------------------------------------------------


def test_segment_synthetic_ddd17_example(served, app):
    client, _, examples = served
    label = next(iter(examples.ddd17_recordings))
    frame, rep, overlay, shares, status = _segment(client, example=label, start=100.0, window=50.0)

    h, w = TINY_DDD17_SENSOR
    frame_px = np.asarray(_png(frame).convert("RGB"))
    assert frame_px.shape == (h, w, 3)
    assert _png(rep).size == (2 * w + app.REPRESENTATION_GAP_PX, h)  # normalized_count: 2 channels side by side
    overlay_px = np.asarray(_png(overlay).convert("RGB")).astype(np.int64)
    assert overlay_px.shape == (h, w, 3)

    # The event frame is exactly the package's rendering of the chosen window.
    recording = examples.ddd17_recordings[label]
    all_events = read_events(recording, "ddd17_ess", sensor_size=TINY_DDD17_SENSOR)
    t0 = int(all_events.t[0]) + 100_000
    window = read_events(recording, "ddd17_ess", t_start_us=t0, t_end_us=t0 + 50_000, sensor_size=TINY_DDD17_SENSOR)
    np.testing.assert_array_equal(frame_px, render_event_frame(window))
    assert f"{len(window)} events" in status and app.UNTRAINED_LABEL in status

    # Every overlay pixel is the 50/50 blend of the frame with one DDD17 class colour.
    implied = 2 * overlay_px - frame_px.astype(np.int64)  # (H, W, 3) ≈ the class colour
    distance = np.abs(implied[:, :, None, :] - DDD17_PALETTE[None, None].astype(np.int64)).max(axis=-1)  # (H, W, 6)
    assert distance.min(axis=-1).max() <= 2
    assert shares["headers"] == app.CLASS_SHARE_COLUMNS and len(shares["data"]) == 6
    assert sum(row[1] for row in shares["data"]) == pytest.approx(100.0, abs=0.1)


def test_segment_model_input_size_and_voxel_grid(served, app):
    client, _, examples = served
    label = next(iter(examples.ddd17_recordings))
    frame, rep, overlay, _, status = _segment(
        client, example=label, representation="voxel_grid", input_size="64x128", window=80
    )
    h, w = TINY_DDD17_SENSOR
    assert _png(overlay).size == (w, h)  # predicted at 64x128, shown at the sensor size
    assert _png(rep).size == (2 * w + app.REPRESENTATION_GAP_PX, h)  # voxel grid with the model's 2 bins
    assert "resized to (64, 128)" in status


@pytest.fixture(scope="module")
def small_events() -> Events:
    """Random events on a 60 x 80 sensor: fits every format (N-Caltech needs x, y < 256 and y != 240)."""
    rng = np.random.default_rng(0)
    n = 3000
    return Events(
        rng.integers(0, 80, n), rng.integers(0, 60, n), np.sort(rng.integers(0, 100_000, n)),
        rng.choice(np.array([-1, 1]), n), (60, 80),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "fmt", "sensor_text", "expected_hw"),
    [
        ("events.txt", "e2vid_txt", "", (60, 80)),
        ("events.zip", "e2vid_txt", "", (60, 80)),
        ("sample.bin", "ncaltech_bin", "60x80", (60, 80)),
        ("events.h5", "dsec_h5", "", (480, 640)),
        ("recording.hdf5", "mvsec_h5", "", (260, 346)),
    ],
)
def test_segment_uploaded_formats(served, small_events, tmp_path, name, fmt, sensor_text, expected_hw):
    client, _, _ = served
    path = write_events(tmp_path / name, small_events, fmt)
    frame, _, overlay, _, status = _segment(client, files=[path], sensor_size=sensor_text, window=100)
    assert "Error" not in status, status
    assert f"({fmt}," in status and f"{len(small_events)} events" in status
    assert _png(frame).size == expected_hw[::-1] and _png(overlay).size == expected_hw[::-1]


def test_segment_uploaded_ddd17_ess_files(served, small_events, tmp_path):
    client, _, _ = served
    folder = write_events(tmp_path / "rec", small_events, "ddd17_ess")
    files = [folder / "events.dat.t", folder / "events.dat.xyp", *sorted((folder / "index").glob("*.npy"))]
    frame, _, _, _, status = _segment(client, files=files, sensor_size="60x80", start=10, window=30)
    assert "uploaded DDD17-ESS recording (ddd17_ess, 80×60)" in status
    assert _png(frame).size == (80, 60)


@pytest.mark.parametrize(
    ("name", "content", "fmt", "needles"),
    [
        ("truncated.bin", b"\x01" * 7, "auto", ["truncated.bin", "truncated N-Caltech"]),
        ("notes.pdf", b"%PDF", "auto", ["notes.pdf", "cannot tell the event format"]),
        ("fake.h5", b"not hdf5 at all", "auto", ["fake.h5", "HDF5"]),
        ("events.dat.t", b"\x00" * 16, "auto", ["needs both", "events.dat.xyp"]),
    ],
)
def test_segment_bad_files_give_clear_messages(served, tmp_path, name, content, fmt, needles):
    client, _, _ = served
    bad = tmp_path / name
    bad.write_bytes(content)
    frame, rep, overlay, shares, status = _segment(client, files=[bad], fmt=fmt)
    assert frame is None and rep is None and overlay is None
    assert status.startswith("⚠️ **Error:**") and "Traceback" not in status
    for needle in needles:
        assert needle in status, status
    assert not re.search(r"/tmp/|gradio", status), f"server paths leak into the message: {status}"


def test_segment_rejects_a_representation_the_model_cannot_take(served):
    client, _, examples = served
    _, _, overlay, _, status = _segment(
        client, example=next(iter(examples.ddd17_recordings)), representation="evsegnet"
    )
    assert overlay is None and "6 channels but the model takes 2" in status


def test_segment_empty_window_is_reported(served):
    client, _, examples = served
    _, _, overlay, _, status = _segment(client, example=next(iter(examples.ddd17_recordings)), start=1e6)
    assert overlay is None and "no events in the window" in status


# ---------------------------------------------------------------------------------------------------------------
# Space metadata, example generation, arguments
# ---------------------------------------------------------------------------------------------------------------


def _front_matter() -> dict:
    text = (SPACE_DIR / "README.md").read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.S)
    assert match, "README.md must start with a --- YAML front matter block ---"
    return yaml.safe_load(match.group(1))


def test_readme_front_matter():
    import gradio

    meta = _front_matter()
    required = {"title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "python_version", "app_file",
                "license", "models", "tags", "short_description"}  # fmt: skip
    assert required <= set(meta), f"missing keys: {required - set(meta)}"
    assert meta["sdk"] == "gradio" and meta["license"] == "apache-2.0"
    assert (SPACE_DIR / meta["app_file"]).is_file()
    colours = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert meta["colorFrom"] in colours and meta["colorTo"] in colours
    assert isinstance(meta["models"], list) and isinstance(meta["tags"], list) and meta["tags"]
    assert isinstance(meta["python_version"], str) and re.fullmatch(r"3\.\d+", meta["python_version"])
    assert 0 < len(meta["short_description"]) <= 60  # the Hub's limit
    assert str(meta["sdk_version"]).split(".")[0] == gradio.__version__.split(".")[0]
    requirements = (SPACE_DIR / "requirements.txt").read_text().splitlines()
    assert f"gradio=={meta['sdk_version']}" in requirements  # the Space runs the gradio the front matter names


def test_prepare_examples_generates_tiny_data_once(app, tmp_path):
    tiny_nuscenes = {"image_size": (176, 64), "scene_duration_s": 1.0, "lidar_azimuth_resolution_deg": 1.0}
    tiny_ddd17 = {"num_recordings": 2, "duration_s": 0.2, "sensor_size": (52, 69), "render_fps": 100.0}
    examples = app.prepare_examples(tmp_path / "cache", nuscenes_kwargs=tiny_nuscenes, ddd17_kwargs=tiny_ddd17)
    assert len(examples.nuscenes_samples) == 2 * 2  # 2 scenes x 2 key frames (one per 0.5 s)
    assert sorted(examples.ddd17_recordings) == ["test/rec_001", "train/rec_000"]
    assert examples.ddd17_sensor_size == (52, 69)
    stamp = (examples.nuscenes_root / "v1.0-mini" / "scene.json").stat().st_mtime_ns
    again = app.prepare_examples(tmp_path / "cache", nuscenes_kwargs=tiny_nuscenes, ddd17_kwargs=tiny_ddd17)
    assert again.nuscenes_samples == examples.nuscenes_samples
    assert (examples.nuscenes_root / "v1.0-mini" / "scene.json").stat().st_mtime_ns == stamp  # reused


def test_representation_image_grey_levels(app):
    counts = torch.zeros(2, 3, 4)
    counts[0, 1, 2] = 5.0  # one active pixel in channel 0; channel 1 empty
    strip = app.representation_image(counts)
    assert strip.shape == (3, 2 * 4 + app.REPRESENTATION_GAP_PX, 3) and strip.dtype == np.uint8
    assert strip[1, 2].tolist() == [0, 0, 0] and strip[0, 0].tolist() == [255, 255, 255]  # max → black, 0 → white
    assert (strip[:, 4 + app.REPRESENTATION_GAP_PX :] == 255).all()  # the empty channel stays white
    signed = torch.tensor([[[-2.0, 0.0, 2.0]]])  # (1, 1, 3)
    assert app.representation_image(signed)[0, :, 0].tolist() == [0, 128, 255]  # 0 → mid grey
    with pytest.raises(ValueError, match="must be"):
        app.representation_image(torch.zeros(3, 4))


def test_environment_variables_set_the_defaults(app, examples_dir, bev_checkpoint, monkeypatch):
    import gradio as gr

    monkeypatch.setenv(app.BEV_MODEL_ENV, str(bev_checkpoint))
    monkeypatch.setenv(app.EXAMPLES_DIR_ENV, str(examples_dir))
    monkeypatch.delenv(app.EVENT_MODEL_ENV, raising=False)
    assert app.default_examples_dir() == examples_dir
    demo = app.build_demo()  # examples from the env cache folder: the symlinked tiny datasets, nothing generated
    textboxes = {block.label: block.value for block in demo.blocks.values() if isinstance(block, gr.Textbox)}
    assert textboxes["Detector"] == str(bev_checkpoint)
    assert textboxes["Event segmentation model"] == ""  # empty: the labelled untrained demo weights


def test_model_cache_is_bounded_and_reuses_models(app):
    cache = app.ModelCache(max_entries=1)
    model, text = cache.get("segmentation", "")
    assert app.UNTRAINED_LABEL in text and cache.get("segmentation", " ")[0] is model  # same key after strip()
    detector, _ = cache.get("detection", None)
    assert list(cache.models) == [("detection", "")] and detector.config.lidar_encoder == "pillar"
    with pytest.raises(ValueError, match="task"):
        cache.get("tracking", "")


def test_build_demo_validates_arguments(app, examples_dir):
    with pytest.raises(TypeError, match="bev_model"):
        app.build_demo(bev_model=123, examples_dir=examples_dir)
    with pytest.raises(ValueError, match="not a folder"):
        app.prepare_examples(Path(__file__))


# ---------------------------------------------------------------------------------------------------------------
# A real browser
# ---------------------------------------------------------------------------------------------------------------


def _browser_missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    return None


@pytest.mark.browser
@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_event_tab_in_headless_chromium(served):
    from playwright.sync_api import sync_playwright

    _, url, _ = served
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_role("tab", name="Event segmentation (EvDistill)").click(timeout=60_000)
            page.locator("#segment-button").click(timeout=30_000)
            image = page.locator("#segment-overlay img")
            image.wait_for(state="visible", timeout=60_000)
            page.wait_for_function(
                "el => el.complete && el.naturalWidth > 0", arg=image.element_handle(), timeout=30_000
            )
            assert image.evaluate("el => [el.naturalWidth, el.naturalHeight]") == list(TINY_DDD17_SENSOR[::-1])
            assert "events in" in page.locator("#segment-status").inner_text(timeout=10_000)
        finally:
            browser.close()
