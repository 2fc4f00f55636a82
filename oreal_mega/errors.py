"""Errors every layer may raise. `UserError` is the user's input at fault (config, file, flag, a run
directory's checkpoints), not the code: the command line prints its message as one line, without a
traceback, and exits with status 2. Anything else is a bug or a crash and keeps its traceback."""


class UserError(Exception):
    """An error caused by the user's input; the message names the file, key or value."""
