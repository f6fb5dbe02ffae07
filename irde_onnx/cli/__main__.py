"""``python -m irde_onnx.cli``: the ``irde`` command."""

import sys

from irde_onnx.cli import main

sys.exit(main())
