"""``python -m figures [--runs DIR ...] [--out DIR]``: regenerate the paper's figures / tables from result files."""

import sys

from figures import main

sys.exit(main())
