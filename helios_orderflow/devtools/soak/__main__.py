"""``python -m helios_orderflow.devtools.soak --minutes N`` (what ``make soak MINUTES=N`` runs)."""

import contextlib
import sys

from helios_orderflow.devtools.soak.cli import main

with contextlib.suppress(KeyboardInterrupt):
    sys.exit(main())
