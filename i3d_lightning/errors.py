"""Errors in what the user supplied (a path, a name, a file); the command-line entry points print
their message as one line instead of a traceback."""


class UserInputError(Exception):
    """Something the user supplied is missing, malformed or does not fit; the message says what."""
