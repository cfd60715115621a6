"""Text-to-video backends behind one small interface, each describing itself (`BackendInfo`), picked by
name from a registry.

Importing this package is cheap: a backend's module is imported when its description is read, and
diffusers (or whatever runs the model) only when it is loaded.
"""

from .backend import (BackendInfo, Component, DiffusersFolder, LoadOption, SampleRequest, Setting, SingleFile, Video,
                      VideoBackend, VideoModelError, VideoSettingsError, backend_class, backend_info, backend_names,
                      load_backend)
from .writer import EightBit

__all__ = ["BackendInfo", "Component", "DiffusersFolder", "EightBit", "LoadOption", "SampleRequest", "Setting",
           "SingleFile", "Video", "VideoBackend", "VideoModelError", "VideoSettingsError", "backend_class",
           "backend_info", "backend_names", "load_backend"]
