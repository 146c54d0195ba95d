"""Identifier rules shared by topics, config and payloads."""

import re
from typing import Annotated

from pydantic import StringConstraints

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)

# Community, building, gateway and device identifiers: lower-case, digits and '-'.
# A leading '_' is reserved for topic levels the hub owns (``_hub``), so an id can never
# collide with them, and MQTT wildcards or separators can never appear in an id.
Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


def is_ident(value: str) -> bool:
    """True when ``value`` is a valid midbrain identifier."""
    return bool(_ID_RE.match(value))
