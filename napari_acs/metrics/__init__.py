"""BraTS region metrics: Dice, HD95, sensitivity, specificity, volumes."""
