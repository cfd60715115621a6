"""Text-to-video backends behind one small interface, picked by name from a registry.

Importing this package is cheap: a backend's module (and diffusers) is imported when it is loaded.
"""

from .backend import (BACKEND_NAMES, OFFLOAD_MODES, SampleRequest, Video, VideoBackend, VideoModelError, VideoSettingsError,
                      backend_class, load_backend)

__all__ = ["BACKEND_NAMES", "OFFLOAD_MODES", "SampleRequest", "Video", "VideoBackend", "VideoModelError", "VideoSettingsError",
           "backend_class", "load_backend"]
