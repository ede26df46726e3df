"""A run: `train` dispatches to the config's method; a run's folder and file names, what makes saved
work resumable, seeds, the time budget, and the devices it trains on."""
