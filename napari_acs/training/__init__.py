"""Fine-tuning: datasets, patch sampling, augmentation, losses, loops, checkpoints."""
