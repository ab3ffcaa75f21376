"""`python -m supervisor`: the `lookalike` command, for a checkout whose console script is not installed."""

import sys

from supervisor.cli import main

sys.exit(main())
