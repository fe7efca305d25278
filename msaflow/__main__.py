"""`python -m msaflow` = the `msaflow` command."""

import sys

from msaflow.cli import main

sys.exit(main())
