"""`python -m voxwatch` is the `voxwatch` command."""

import sys

from voxwatch.cli import main

sys.exit(main())
