"""The one error every layer may raise about params: at the bottom, so all can import it."""

from __future__ import annotations


class ParamsError(ValueError):
    """Params that do not match the schema; the message names the dotted key."""
