"""python -m transfer.client: the command-line client."""

import sys

from transfer.client.cli import main

sys.exit(main())
