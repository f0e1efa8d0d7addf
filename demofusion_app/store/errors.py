"""Errors a person can cause in the store; each message says what to do."""

from __future__ import annotations

from demofusion_app.engine.errors import UserError


class StoreError(UserError):
    """Base of the store's errors."""


class SettingsError(StoreError):
    """A setting name or value that cannot be used."""


class PresetError(StoreError):
    """A preset that cannot be read, saved or found."""


class PresetNotFound(PresetError, KeyError):
    """No preset has that name (also a KeyError, as a failed lookup)."""

    # KeyError would quote the message; show it as written.
    __str__ = Exception.__str__


class BuiltinPresetError(PresetError):
    """An attempt to change or remove a read-only built-in preset."""


class PresetExists(PresetError):
    """A preset of that name is already there."""


class StoreLocked(StoreError, TimeoutError):
    """Another process held the store's lock too long (also an OSError, as a failed file access)."""

    __str__ = Exception.__str__
