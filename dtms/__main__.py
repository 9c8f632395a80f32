"""`python -m dtms`: the command line."""

from dtms.cli import main

if __name__ == "__main__":
    main()
