"""``python -m shared.api.openapi``: see :mod:`shared.api.openapi.generate`."""

import sys

from shared.api.openapi.generate import main

if __name__ == "__main__":
    sys.exit(main())
