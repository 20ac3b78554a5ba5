"""Base error of alface; each module derives its own class from it."""


class AlfaceError(Exception):
    """An error with a message fit to show a user on one line (the CLI exits 2 on it)."""
