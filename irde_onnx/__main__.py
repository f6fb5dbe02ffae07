"""``python -m irde_onnx`` runs the ``irde`` command line."""

import sys

from irde_onnx.cli import main

sys.exit(main())
