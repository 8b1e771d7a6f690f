import sys

from lightning_sr.report import main

sys.exit(main())
