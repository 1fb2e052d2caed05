"""`python -m maskray ...`: the same as the `maskray` command."""

from maskray.cli import main

main()
