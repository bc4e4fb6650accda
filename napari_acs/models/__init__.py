"""ACS operator, 2D->ACS converter, encoders, decoder, heads, presets and checkpoints."""
