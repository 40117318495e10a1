"""``python -m mailops``: the ``mailops`` command."""

import sys

from mailops.cli import main

sys.exit(main())
