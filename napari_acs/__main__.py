"""``python -m napari_acs`` is the ``napari-acs`` command line."""

from napari_acs.cli import main

raise SystemExit(main())
