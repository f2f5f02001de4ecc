"""``python -m fleet_server.cli`` = ``nanofleet``."""

import sys

from fleet_server.cli import main

sys.exit(main())
