"""The errors the command-line entry points report as one line instead of a traceback: mistakes in
what the user supplied, Ctrl-C, and a training run that diverged."""


class UserInputError(Exception):
    """Something the user supplied is missing, malformed or does not fit; the message says what."""


class InterruptedByUserError(Exception):
    """The user stopped the command (Ctrl-C); the message says what was kept and how to go on."""


class TrainingDivergedError(RuntimeError):
    """Training produced non-finite losses or gradients too many times in a row, or non-finite weights."""


#: Exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


def first_line(error: Exception) -> str:
    """The first line of an exception's message (at most 300 characters), or its type's name."""
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
