"""``python -m demessaging``."""

from demessaging.cli import main

main()
