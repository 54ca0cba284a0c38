"""User-facing errors: the CLI prints their message on one line and exits non-zero, without a traceback."""


class AutoradError(Exception):
    """A problem with the user's input or environment (bad path, bad config, corrupt file...)."""

    exit_code = 2


class InputError(AutoradError):
    """The input data cannot be used as a whole (missing path, no DICOM, mixed series...)."""


class ConfigError(AutoradError):
    """A config file has an unknown key, a wrong type or an invalid value."""


class CheckpointError(AutoradError):
    """A checkpoint or weight file is missing keys, has extra keys, wrong shapes or is corrupt."""


class MissingDependencyError(AutoradError):
    """An optional package (weights, ray, scikit-image...) that the requested feature needs is absent."""
