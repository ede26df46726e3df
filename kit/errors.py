"""The one exception type that means "the user can fix this".

The command line prints a KitError as a single line on stderr and exits non-zero;
anything else is a bug and keeps its traceback.
"""


class KitError(Exception):
    """A user-facing error: bad input, missing file, wrong option."""
