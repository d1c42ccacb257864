"""The one exception type for user mistakes: the CLI prints its message without a traceback."""


class UserError(ValueError):
    """A problem with what the user asked for or supplied (bad argument, bad data file)."""
