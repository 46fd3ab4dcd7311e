"""Typed errors for bad user input.

The CLI turns any `InputError` into one line `error: …` and exit code 2, with no traceback and
no partial output; everything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """The user's input (file, config, argument) is unusable; message says why in one line."""


class FormatError(InputError):
    """A file is malformed, truncated or of an unknown format."""


class ConfigError(InputError):
    """A config key is missing, unknown or out of range."""


class ExportError(InputError):
    """A model cannot be exported; the message names the op."""
