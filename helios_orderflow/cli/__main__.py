"""``python -m helios_orderflow.cli``: the ``helios`` command."""

import sys

from helios_orderflow.cli.main import main

sys.exit(main())
