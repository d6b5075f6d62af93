"""User-facing errors: the command line and the app show ``str(err)`` as one line, no traceback."""


class StylecamError(Exception):
    """Base for every error a user can cause (bad file, bad flag, missing device)."""


class InputError(StylecamError, ValueError):
    """A file, flag or value given by the user is missing or invalid."""


class DeviceError(StylecamError, RuntimeError):
    """A camera, GPU or output device is missing or stopped working."""
