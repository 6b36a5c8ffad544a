"""Event-camera data: the `Events` container, file formats, representations and streaming datasets."""

from .core import EventFormatError, Events

__all__ = ["EventFormatError", "Events"]
