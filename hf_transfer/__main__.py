"""``python -m hf_transfer`` (and ``accelerate launch -m hf_transfer``)."""

import sys

from hf_transfer.cli import main

sys.exit(main())
