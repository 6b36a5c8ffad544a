"""Event-camera data: the `Events` container, file formats, representations and streaming datasets."""

from .augmentation import augment_event_frames
from .core import EventFormatError, Events
from .datasets import (
    REPRESENTATIONS,
    event_recognition_dataset,
    event_representation,
    event_segmentation_dataset,
    labeled_image_dataset,
    representation_channels,
)
from .formats import (
    DAVIS346_SENSOR_SIZE,
    DSEC_SENSOR_SIZE,
    EVENT_FORMATS,
    EventRecording,
    detect_format,
    open_recording,
    read_events,
    read_mvsec_frames,
    write_events,
)
from .representations import (
    event_tensors,
    to_evsegnet_image,
    to_histogram,
    to_normalized_count_image,
    to_stacked_frames,
    to_voxel_grid,
)

__all__ = [
    "DAVIS346_SENSOR_SIZE",
    "DSEC_SENSOR_SIZE",
    "EVENT_FORMATS",
    "REPRESENTATIONS",
    "EventFormatError",
    "EventRecording",
    "Events",
    "augment_event_frames",
    "detect_format",
    "event_recognition_dataset",
    "event_representation",
    "event_segmentation_dataset",
    "event_tensors",
    "labeled_image_dataset",
    "open_recording",
    "read_events",
    "read_mvsec_frames",
    "representation_channels",
    "to_evsegnet_image",
    "to_histogram",
    "to_normalized_count_image",
    "to_stacked_frames",
    "to_voxel_grid",
    "write_events",
]
