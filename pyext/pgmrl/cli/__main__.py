"""`python -m pgmrl.cli` runs the command line."""

from . import main

main()
