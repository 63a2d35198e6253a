"""``python -m fusetrain``: the same command line as ``fusetrain``."""
import sys

from .cli import main

sys.exit(main())
