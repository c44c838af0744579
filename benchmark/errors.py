"""Errors the CLI turns into one line on stderr and exit code 2."""


class SnapBenchError(Exception):
    """Bad input from the user: a name, a file, a value. Shown as one line, never a traceback."""
