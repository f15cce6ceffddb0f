"""User-facing errors: the CLI prints these as one line and exits non-zero, without a traceback."""


class ToonclipError(Exception):
    """A problem with the user's input (a file, a folder, an option) that they can fix.

    The message names the file or option and says what to do about it.
    """


class ConfigError(ToonclipError):
    """An unknown or invalid option or name."""


class DataError(ToonclipError):
    """A problem with the images or folders given."""


class WeightsError(ToonclipError):
    """Pretrained weights were required but could not be loaded."""
