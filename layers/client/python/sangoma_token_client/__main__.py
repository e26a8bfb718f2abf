"""`python -m sangoma_token_client`: the same command line as the `sangoma-token` script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m sangoma_token_client"))
