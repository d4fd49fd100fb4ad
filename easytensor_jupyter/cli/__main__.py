from __future__ import annotations

import sys

from easytensor_jupyter.cli import main

sys.exit(main())
