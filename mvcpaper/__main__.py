"""``python -m mvcpaper`` (and ``torchrun -m mvcpaper``): the command line."""
import sys

from .cli import main

sys.exit(main())
