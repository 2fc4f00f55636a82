"""Errors every layer may raise. `UserError` is the user's input at fault (config, file, flag): the
command line prints its message as one line, without a traceback, and exits with status 2."""


class UserError(Exception):
    """An error caused by the user's input; the message names the file, key or value."""
