"""``python -m painterly`` is the ``painterly`` command."""

import sys

from .cli import main

sys.exit(main())
