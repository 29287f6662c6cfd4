from __future__ import annotations

import sys

from floyo_pipeline.cli import main

sys.exit(main())
