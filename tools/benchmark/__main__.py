import sys

from tools.grid.cli import main

sys.exit(main())
