"""``python -m voicegraph.cli``: the ``voicegraph`` command."""

import sys

from . import main

sys.exit(main())
