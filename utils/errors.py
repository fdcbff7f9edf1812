"""The exception types scripts end with in one line: UserError for problems the user can fix (bad paths,
flags, files), Interrupted for a Ctrl-C that knows what it leaves behind.

Scripts catch them and print their message as a single line instead of a traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message says which file or flag and what to do."""


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C (or SIGTERM) re-raised by code that knows what the interrupted run keeps; the message says it."""
