"""``python -m lwdp``: the same as the ``lwdp`` command."""

import sys

from .cli import main

sys.exit(main())
