"""`python -m pgmrl` runs the command line."""

from .cli import main

main()
