"""``python -m detstack``: the ``detstack`` command."""

import sys

from .cli import main

sys.exit(main())
