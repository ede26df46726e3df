"""A run's folder and file names, what makes saved work resumable, seeds, the time budget, and the
devices it trains on: what every training method (kit/methods/) builds on."""
