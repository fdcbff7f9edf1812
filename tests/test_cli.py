"""utils.cli.sigterm_interrupts: SIGTERM stops a script as Ctrl-C does, in its own process only."""
import multiprocessing
import os
import signal
import time

import pytest

from utils.cli import sigterm_interrupts


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
