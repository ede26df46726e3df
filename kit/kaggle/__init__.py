"""Kaggle: the client (imported lazily, secrets scrubbed), what a kernel meets inside Kaggle, building,
running and fetching kernels, submitting and the ledger of submissions."""
