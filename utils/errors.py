"""The one exception type for problems the user can fix (bad paths, flags, files).

Scripts catch it and print its message as a single line instead of a traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message says which file or flag and what to do."""
