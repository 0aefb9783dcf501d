import sys

from hmolqd.cli import main

sys.exit(main())
