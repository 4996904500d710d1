"""`python -m service.cli` is `socialcare`."""

from service.cli import main

main()
