"""Errors shared across layers: :class:`SnapBenchError`, which the CLI turns into one line on stderr and
exit code 2, and the base of the trainer's non-finite loss."""


class SnapBenchError(Exception):
    """Bad input from the user: a name, a file, a value. Shown as one line, never a traceback."""


class NonFiniteLossError(RuntimeError):
    """A training loss turned NaN or inf: the base of the trainer's ``NonFiniteLoss``.

    Not a :class:`SnapBenchError` (it is no user input error). It lives here, below the training
    layer, so that code handed a trainer (the relearning probe) can catch it without importing
    :mod:`snap_bench.train`.
    """
