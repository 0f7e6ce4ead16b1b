"""``python -m archrank`` (and ``torchrun -m archrank``): the command-line interface."""

from archrank.cli import main

main()
