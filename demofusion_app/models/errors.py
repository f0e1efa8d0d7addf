"""The one exception the model layer raises for anything a user can cause or fix."""

from __future__ import annotations

from demofusion_app.engine.errors import UserError


class ModelError(UserError):
    """A model that cannot be used; `str(e)` is one line naming the file or id and what to do."""
