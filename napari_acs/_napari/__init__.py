"""napari front end: reader, writer, sample data and dock widgets (Qt + napari only)."""
