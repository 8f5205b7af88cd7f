"""`python -m dns_server`: the same program as the `dns-server` console script."""

import sys

from dns_server.cli import main

sys.exit(main())
