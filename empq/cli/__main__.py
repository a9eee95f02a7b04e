"""``python -m empq.cli``: the same as the ``empq`` command."""

import sys

from empq.cli import main

sys.exit(main())
