"""`python -m eval.fid`: the evaluation's command line (eval.cli), under the name users know."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
