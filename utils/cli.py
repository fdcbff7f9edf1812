"""Command-line wiring shared by the scripts: errors in one line, flag values checked at parsing,
SIGTERM handled like Ctrl-C, and the exit statuses."""
import argparse
import contextlib
import os
import signal
import sys

from utils.errors import Interrupted, UserError


def print_line(text):
    """Print `text` and its newline to stderr in one write: the lines of processes sharing a terminal or a pipe
    (torchrun's ranks) stay whole instead of running into each other."""
    sys.stderr.write(f'{text}\n')
    sys.stderr.flush()


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2), like every other error."""

    def error(self, message):
        print_line(f'error: {message} (see {self.prog} --help)')
        sys.exit(2)


def checked(convert, problem):
    """An argparse type: `convert` the text, then refuse the value when problem(value) says why."""
    def parse(text):
        value = convert(text)
        why = problem(value)
        if why is not None:
            raise argparse.ArgumentTypeError(f'{text if text.isprintable() else repr(text)}: {why}')  # on one line
        return value
    parse.__name__ = convert.__name__  # argparse names the type in 'invalid int value' messages
    return parse


def at_least(minimum):
    """A problem function for checked(): values below `minimum` are refused."""
    return lambda value: None if value >= minimum else f'must be at least {minimum}'


@contextlib.contextmanager
def sigterm_interrupts():
    """Within the block, SIGTERM raises KeyboardInterrupt in this process's main thread, as Ctrl-C does, so a
    terminated run cleans up as an interrupted one (temporary files removed, writers aborted) before it exits.

    Processes forked inside the block (data loading workers) end at SIGTERM as by default.
    """
    owner = os.getpid()

    def interrupt(signum, frame):
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def quiet_interrupts(kept='nothing was done'):
    """Ctrl-C or SIGTERM within the block ends the process at once, with status 130 and one line saying what is
    `kept`, for a block that leaves nothing to clean up: a script's imports (torch takes seconds to load, before
    run_command is entered).

        with quiet_interrupts():
            import torch

    No exception is raised inside the libraries being imported: some catch it and go on (the Ctrl-C was lost
    and the app served), and one left half-imported fails on its next use with its own traceback (numpy's
    ImportError or RecursionError).
    """
    line = f'interrupted: {kept}\n'.encode()

    def end(signum, frame):
        os.write(2, line)  # not sys.stderr: the interrupted code may be inside its write
        os._exit(130)

    previous = {number: signal.signal(number, end) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_command(body, kept):
    """Run a script's body() under sigterm_interrupts and return its exit status: body()'s (0 when None);
    2 after a UserError, printed as one 'error:' line (one for each line of its message); 130 after Ctrl-C or
    SIGTERM, saying what is `kept` (or, for an Interrupted, what its message says)."""
    try:
        with sigterm_interrupts():
            return body() or 0
    except UserError as error:
        for line in str(error).splitlines():  # one line a problem (a list with several bad lines)
            print_line(f'error: {line}')
        return 2
    except Interrupted as interruption:
        print_line(f'interrupted: {interruption}')
        return 130
    except KeyboardInterrupt:
        print_line(f'interrupted: {kept}')
        return 130
