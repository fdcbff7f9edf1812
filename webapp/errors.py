"""The app's refusals beside UserError (400): a request on a stale state (409) or on a clip that is gone (404);
the one line a page shows for an error (never a path of the server's, never Python advice), and what the
terminal shows of it."""
import traceback

from utils.cli import print_line
from utils.errors import UserError
from utils.files import WriteError


class Conflict(UserError):
    """The request does not fit the app's state now: the page is stale, or a propagation is in the way."""


class NotFound(UserError):
    """The request names a clip or page that does not exist (any more)."""


def stale_page():
    return Conflict('this clip was changed in another tab or window since this page loaded it; reload the page '
                    'to see its latest state, then make the change again')


def page_message(error):
    """The line the page shows for an exception raised while serving it or propagating."""
    if isinstance(error, WriteError):
        return (f'the app could not save its work ({error.reason}); free disk space where its workspace is (the '
                f'folder app.py printed at start), then try again')
    if isinstance(error, UserError):
        return str(error)
    return f'internal error: {type(error).__name__}: {error}'


def report(error):
    """Tell the terminal what the page is not told: the file a write failed on, a bug's traceback."""
    if isinstance(error, WriteError):
        print_line(f'error: {error}')
    elif not isinstance(error, UserError):
        traceback.print_exception(error)
