import sys

from kamal_secure.cli import main

sys.exit(main())
