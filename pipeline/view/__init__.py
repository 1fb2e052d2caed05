"""`maskray view`: a local, read-only web viewer of an output's frames, masks and tracks."""
