"""The one exception type for expected problems (bad data, bad params, bad files)."""


class PipelineError(Exception):
    """An expected failure: the command line prints its message, without a traceback, and
    exits with ``exit_code`` (1 unless a command documents another)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
