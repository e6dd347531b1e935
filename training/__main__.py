"""`python -m training ...` is `facerec-train ...`."""

from training.cli import main

raise SystemExit(main())
