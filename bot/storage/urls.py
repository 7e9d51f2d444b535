"""Database URLs as they may be shown: never with their password."""

from __future__ import annotations

import re

_PASSWORD_IN_URL = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^/@:]*):[^@/]*@", re.IGNORECASE)
_PASSWORD_PARAM = re.compile(r"(?P<key>password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL as it may appear in a log line or an error: any password replaced by ``***``.

    Covers ``scheme://user:password@host`` and a ``password=`` query parameter (libpq accepts both).
    """
    shown = _PASSWORD_IN_URL.sub(r"\g<head>:***@", url)
    return _PASSWORD_PARAM.sub(r"\g<key>***", shown)
