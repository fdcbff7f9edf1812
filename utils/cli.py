"""Command-line parsing shared by the scripts: errors in one line, and flag values checked at parsing."""
import argparse
import sys


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2), like every other error."""

    def error(self, message):
        print(f'error: {message} (see {self.prog} --help)', file=sys.stderr)
        sys.exit(2)


def checked(convert, problem):
    """An argparse type: `convert` the text, then refuse the value when problem(value) says why."""
    def parse(text):
        value = convert(text)
        why = problem(value)
        if why is not None:
            raise argparse.ArgumentTypeError(f'{text}: {why}')
        return value
    parse.__name__ = convert.__name__  # argparse names the type in 'invalid int value' messages
    return parse


def at_least(minimum):
    """A problem function for checked(): values below `minimum` are refused."""
    return lambda value: None if value >= minimum else f'must be at least {minimum}'
