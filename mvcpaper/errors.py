"""The errors a user can fix, shared by every module (a leaf: it imports nothing of the package).

Every error the package raises on purpose for a bad input, a missing file or a refused
cache entry derives from :class:`MvcpaperError`; the command line prints its message as
one line and exits with code 2. Anything else is a programming error and keeps its
traceback.
"""
from __future__ import annotations

__all__ = ["MvcpaperError", "UnknownNameError", "DownloadError"]


class MvcpaperError(Exception):
    """A problem the user can fix: the message says what was wrong and what to do."""


class UnknownNameError(MvcpaperError, KeyError):
    """An unknown registry name; the message lists the valid ones (every registry uses it)."""

    def __init__(self, kind: str, name: str, valid, where: str = ""):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        shown = ", ".join(self.valid[:12]) + (f", ... ({len(self.valid)} in all)" if len(self.valid) > 12 else "")
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s are: {shown}{'. ' + where if where else ''}")

    def __str__(self) -> str:
        return self.args[0]


class DownloadError(MvcpaperError):
    """A download failed (no connection, HTTP error, timeout)."""
