"""utils.cli: SIGTERM stops a script as Ctrl-C does, in its own process only; messages go out one write a line."""
import multiprocessing
import os
import signal
import time

import pytest

from utils.cli import print_line, run_command, sigterm_interrupts
from utils.errors import UserError


def _sleep():
    time.sleep(30)


def test_sigterm_raises_keyboard_interrupt_inside_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs before this ends
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_process_forked_inside_the_block_ends_at_sigterm():
    with sigterm_interrupts():
        child = multiprocessing.get_context('fork').Process(target=_sleep)
        child.start()
        time.sleep(0.5)  # let the child run its own code
        child.terminate()  # SIGTERM
        child.join(10)
    assert child.exitcode == -signal.SIGTERM


class _Writes:
    """A stand-in stderr that records each write call."""

    def __init__(self):
        self.calls = []

    def write(self, text):
        self.calls.append(text)

    def flush(self):
        pass


def test_messages_reach_stderr_in_one_write_each(monkeypatch):
    # Two torchrun ranks failing at once share one pipe: a line written in two calls (text, then its newline)
    # ran into the other rank's line.
    stderr = _Writes()
    monkeypatch.setattr('sys.stderr', stderr)
    print_line('warning: one')

    def fail():
        raise UserError('two')
    assert run_command(fail, 'nothing') == 2
    assert stderr.calls == ['warning: one\n', 'error: two\n']
