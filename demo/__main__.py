"""``python -m demo`` (``make demo``): the whole product on one machine, against the bundled emulators."""
import sys

from demo.run import main

sys.exit(main())
