"""Children that a test stops with SIGINT (what Ctrl-C sends) must not inherit an ignored SIGINT: a shell
starting the test run in the background without job control (``make test &``, nohup) sets it to ignored,
and Python then never raises KeyboardInterrupt in the child."""

import signal


def interruptible() -> None:
    """``preexec_fn`` for ``subprocess.Popen``: give the child the default SIGINT disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
