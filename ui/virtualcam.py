"""Virtual camera output through pyvirtualcam (the optional ``virtualcam`` extra).

Every way this can fail says what to do: the extra is missing, v4l2loopback is not loaded
(Linux), or the device is busy. Used from the pipeline worker's thread only.
"""

from __future__ import annotations

import sys

import numpy as np

from realtime.errors import DeviceError

INSTALL_HINT = "pip install 'stylecam[virtualcam]'"
LOOPBACK_HINT = "sudo modprobe v4l2loopback exclusive_caps=1"


class VirtualCameraError(DeviceError):
    """The virtual camera cannot start; the message says how to fix it."""


def explain_failure(err: BaseException, platform: str = sys.platform) -> str:
    """Turn a pyvirtualcam start-up failure into one line that says what to do."""
    text = str(err)
    if platform.startswith("linux") and ("v4l2" in text.lower() or "/dev/video" in text):
        return ("virtual camera: no v4l2loopback device found. Load the kernel module with "
                f"`{LOOPBACK_HINT}` (install it first: `sudo apt install v4l2loopback-dkms`), "
                "then press V again.")
    if platform == "darwin":
        return f"virtual camera: {text} — install OBS Studio and start its virtual camera once."
    if platform.startswith("win"):
        return f"virtual camera: {text} — install OBS Studio (or Unity Capture) for its virtual camera driver."
    return f"virtual camera: {text}"


class VirtualCamera:
    """An open virtual camera that takes BGR frames of one fixed size.

    Args:
        width: frame width in pixels.
        height: frame height in pixels.
        fps: the rate announced to apps that read the camera.
    """

    def __init__(self, width: int, height: int, fps: float):
        try:
            import pyvirtualcam
        except ImportError:
            raise VirtualCameraError(f"virtual camera: pyvirtualcam is not installed; install it with "
                                     f"`{INSTALL_HINT}`") from None
        try:
            self._cam = pyvirtualcam.Camera(width=width, height=height, fps=fps,
                                            fmt=pyvirtualcam.PixelFormat.BGR)
        except Exception as e:  # pyvirtualcam raises RuntimeError/ValueError per backend
            raise VirtualCameraError(explain_failure(e)) from None
        self.width, self.height = width, height
        self.device: str = getattr(self._cam, "device", "virtual camera")

    def send(self, frame: np.ndarray) -> None:
        """Publish one frame. Frames of another size are resized (the camera's size is fixed once open).

        Shape:
            frame: ``(H, W, 3)`` uint8 BGR.
        """
        if frame.shape[1] != self.width or frame.shape[0] != self.height:
            import cv2

            frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        self._cam.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self._cam.close()
