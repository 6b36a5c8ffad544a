"""Event frames and segmentation overlays as uint8 arrays (and PNGs), on hand-built inputs with known colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_crossdistill.data.events import Events, to_voxel_grid
from hf_crossdistill.visualization import (
    DDD17_PALETTE,
    DSEC_PALETTE,
    colorize_segmentation,
    make_palette,
    overlay_segmentation,
    render_event_frame,
    save_png,
    segmentation_panel,
)


def _events() -> Events:
    # Pixel (0, 0): 2 positive events; (1, 1): 2 negative; (2, 2): one of each; the rest is empty.
    return Events(
        x=np.array([0, 0, 1, 1, 2, 2]),
        y=np.array([0, 0, 1, 1, 2, 2]),
        t=np.arange(6, dtype=np.int64) * 10,
        p=np.array([1, 1, -1, -1, 1, -1], dtype=np.int8),
        sensor_size=(3, 4),
    )


def test_event_frame_colours_on_white_and_black(tmp_path):
    frame = render_event_frame(_events(), clip_percentile=100, save_path=tmp_path / "ev" / "frame.png")
    assert frame.shape == (3, 4, 3) and frame.dtype == np.uint8
    assert tuple(frame[0, 0]) == (255, 0, 0)  # positive: red
    assert tuple(frame[1, 1]) == (0, 0, 255)  # negative: blue
    assert tuple(frame[2, 2]) == (128, 0, 128)  # one of each: half red, half blue
    assert tuple(frame[0, 3]) == (255, 255, 255)  # no event: background
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ev" / "frame.png")), frame)
    black = render_event_frame(_events(), background="black", clip_percentile=100)
    assert tuple(black[0, 3]) == (0, 0, 0) and tuple(black[0, 0]) == (255, 0, 0)


def test_event_frame_opacity_grows_with_count_and_is_clipped():
    histogram = np.zeros((2, 1, 3))
    histogram[0, 0] = [1, 2, 100]  # a hot pixel
    frame = render_event_frame(histogram, clip_percentile=50)  # the median count (2) is full opacity
    assert tuple(frame[0, 1]) == tuple(frame[0, 2]) == (255, 0, 0)
    assert tuple(frame[0, 0]) == (255, 128, 128)  # half opacity on white


def test_event_frame_from_a_signed_voxel_grid_and_torch():
    events = _events()
    voxel = to_voxel_grid(events, 3)  # (3, H, W) signed
    frame = render_event_frame(voxel, clip_percentile=100)
    assert tuple(frame[0, 0]) == (255, 0, 0) and tuple(frame[1, 1]) == (0, 0, 255)
    assert tuple(frame[2, 2]) == (255, 255, 255)  # +1 and -1 cancel in the net polarity
    signed = torch.zeros(2, 2)
    signed[0, 1] = -3.0
    assert tuple(render_event_frame(signed)[0, 1]) == (0, 0, 255)


def test_event_frame_bad_input():
    with pytest.raises(ValueError, match="background"):
        render_event_frame(np.zeros((2, 2, 2)), background="grey")
    with pytest.raises(ValueError, match="histogram"):
        render_event_frame(np.full((3, 2, 2), 1.0), kind="histogram")
    with pytest.raises(ValueError, match="NaN"):
        render_event_frame(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="shape"):
        render_event_frame(np.zeros((1, 2, 2, 2)))


def test_palettes_and_colorize():
    assert DDD17_PALETTE.shape == (6, 3) and DSEC_PALETTE.shape == (11, 3)
    assert len({tuple(c) for c in DSEC_PALETTE}) == 11  # every class distinguishable
    labels = np.array([[0, 5], [255, 2]])
    colours = colorize_segmentation(labels, DDD17_PALETTE, ignore_color=(1, 2, 3))
    assert tuple(colours[0, 0]) == tuple(DDD17_PALETTE[0]) and tuple(colours[0, 1]) == tuple(DDD17_PALETTE[5])
    assert tuple(colours[1, 0]) == (1, 2, 3)
    generated = make_palette(20)
    assert generated.shape == (20, 3) and len({tuple(c) for c in generated}) == 20
    with pytest.raises(ValueError, match="palette has 6 colours"):
        colorize_segmentation(np.array([[6]]), DDD17_PALETTE)
    with pytest.raises(ValueError, match="non-integer"):
        colorize_segmentation(np.array([[0.5]]), DDD17_PALETTE)


def test_overlay_blends_and_keeps_ignored_pixels(tmp_path):
    image = np.zeros((3, 2, 2), dtype=np.float32)  # black, channels-first as the loaders give it
    labels = torch.tensor([[0, 1], [255, 1]])
    palette = np.array([[200, 0, 0], [0, 100, 0]])
    out = overlay_segmentation(image, labels, palette, alpha=0.5, save_path=tmp_path / "overlay.png")
    assert tuple(out[0, 0]) == (100, 0, 0) and tuple(out[0, 1]) == (0, 50, 0)
    assert tuple(out[1, 0]) == (0, 0, 0)  # ignored: the image shows through
    assert np.array_equal(np.asarray(Image.open(tmp_path / "overlay.png")), out)
    grey = np.full((2, 2), 255, dtype=np.uint8)
    assert tuple(overlay_segmentation(grey, labels, palette, alpha=0.0)[0, 0]) == (255, 255, 255)
    with pytest.raises(ValueError, match="label map is"):
        overlay_segmentation(np.zeros((3, 3, 3)), labels, palette)
    with pytest.raises(ValueError, match="alpha"):
        overlay_segmentation(image, labels, palette, alpha=2)


def test_segmentation_panel_over_an_event_frame(tmp_path):
    frame = render_event_frame(_events())
    prediction = np.zeros((3, 4), dtype=np.int64)
    panel = segmentation_panel(frame, prediction, prediction, DDD17_PALETTE, gap=2, save_path=tmp_path / "p.png")
    assert panel.shape == (3, 4 * 3 + 2 * 2, 3)
    assert np.array_equal(panel[:, :4], frame)
    assert np.array_equal(panel[:, 6:10], panel[:, 12:16])  # identical prediction and labels
    assert (tmp_path / "p.png").exists()
    with pytest.raises(ValueError, match="uint8"):
        save_png(np.zeros((2, 2), dtype=np.float32), tmp_path / "bad.png")
