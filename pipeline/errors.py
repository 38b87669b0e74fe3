"""User-facing errors: each message names the problem and how to fix it.

The CLI prints them as one line and exits non-zero; the dashboard shows them in a box. Anything
else escaping is a bug.
"""


class QuickDrawError(Exception):
    """A problem the user can fix; the message says what and how."""


class DrawingError(QuickDrawError, ValueError):
    """Stroke data that cannot be turned into a drawing (empty, NaN, wrong nesting...)."""


class DataFormatError(QuickDrawError, ValueError):
    """A data file that is not what its format promises (wrong dtype/shape, corrupt header)."""


class DownloadError(QuickDrawError):
    """A download that failed: names the URL and how to use local files instead."""


class RunError(QuickDrawError):
    """A problem with a run folder: missing, locked by another trainer, damaged, bad name."""
