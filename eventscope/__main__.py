"""``python -m eventscope``: the same command line as ``eventscope``."""
import sys

from eventscope.cli import main

sys.exit(main())
