"""The project's own error types.

Everything a user can get wrong (a bad file, a bad row, a bad parameter) raises a subclass of
:class:`CausalRouterError`; the CLI turns these into one readable line and exit code 1, and shows a
traceback only with ``--debug``. Each subclass also derives from the builtin a caller would expect
(``ValueError``, ``FileNotFoundError``), so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = ["CausalRouterError", "UnreadableFileError", "MissingFileError", "InvalidParameterError",
           "StoreDamagedError", "MissingArtifactError", "DeviceUnavailableError", "SettingsError"]


class CausalRouterError(Exception):
    """Base class of the errors that mean "the input is wrong", not "the code is wrong"."""


class UnreadableFileError(CausalRouterError, ValueError):
    """A data file that exists but cannot be read: empty, wrong format, bad encoding, broken line."""


class MissingFileError(CausalRouterError, FileNotFoundError):
    """A data file (or folder) that does not exist, or is a directory where a file was expected."""


class InvalidParameterError(CausalRouterError, ValueError):
    """A parameter outside its allowed range (e.g. a negative or non-finite ``lam``)."""


class StoreDamagedError(CausalRouterError, RuntimeError):
    """The tracking store is damaged, emptied or not an MLflow database, or lost a champion it had."""


class MissingArtifactError(CausalRouterError, FileNotFoundError):
    """A registered model version whose artifacts are gone (deleted, moved): names the version and path."""


class DeviceUnavailableError(CausalRouterError, RuntimeError):
    """A device asked for by name that this machine lacks (``cuda`` where torch sees no GPU)."""


class SettingsError(CausalRouterError, ValueError):
    """A params file that cannot be used: unreadable YAML, an unknown key or section, a mistyped value."""
