"""Resource instances of the code location."""

from __future__ import annotations

from assets.resources import KttResource

RESOURCES = {"ktt": KttResource()}
