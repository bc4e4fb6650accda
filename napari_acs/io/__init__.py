"""BraTS case discovery, loading, validation, label conventions and NIfTI writing."""
