"""The one exception type for expected problems (bad data, bad params, bad files)."""


class StageError(Exception):
    """An expected failure: the CLI prints its message, without a traceback, and exits 1."""
