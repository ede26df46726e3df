"""Kaggle: the client (imported lazily, secrets scrubbed), downloading the competition with it, building,
running and fetching kernels, submitting and the ledger of submissions. What a kernel meets inside
Kaggle (its input and output folders) is kit/kaggle_env.py's, below the pipeline that reads it."""
