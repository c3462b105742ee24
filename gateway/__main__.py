"""`python -m gateway <command>`; see gateway/cli.py."""
import sys

from .cli import main

sys.exit(main())
