"""Typed errors for bad user input.

The CLI turns any `InputError` into one line `error: …` and exit code 2, with no traceback and
no partial output; everything else is a bug and keeps its traceback.

The library does not know the command line: a message that tells the user which of its
settings to change names the setting the library's way — a `Setting` field of the message
(`InputError("… pass {drop}", drop=Setting("drop_invalid", "drop_invalid=True"))`). A caller
that exposes the setting under its own name, such as apps/ with a command-line flag, says
that name instead (`renamed`).
"""
from __future__ import annotations


class Setting(str):
    """A setting named in an error message: reads as the library spells it (`spelled`,
    default `name`); `name` is what a caller matches to its own name for it."""

    def __new__(cls, name: str, spelled: str | None = None):
        text = super().__new__(cls, spelled or name)
        text.name = name
        return text


class InputError(ValueError):
    """The user's input (file, config, argument) is unusable; message says why in one line.
    With `fields`, `message` is a template (`str.format`) and `Setting` fields can be renamed."""

    def __init__(self, message: str = "", **fields):
        self.template, self.fields = message, fields
        super().__init__(message.format(**fields) if fields else message)

    def renamed(self, names: dict[str, str]) -> "InputError":
        """This error with each `Setting` it names said as `names[setting.name]`."""
        fields = {k: names.get(v.name, v) if isinstance(v, Setting) else v
                  for k, v in self.fields.items()}
        if fields == self.fields:
            return self
        return type(self)(self.template, **fields).with_traceback(self.__traceback__)


class FormatError(InputError):
    """A file is malformed, truncated or of an unknown format."""


class ConfigError(InputError):
    """A config key is missing, unknown or out of range."""


class ExportError(InputError):
    """A model cannot be exported; the message names the op."""
