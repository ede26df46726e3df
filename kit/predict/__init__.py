"""Predict and score: the test set's predictions as a clipped, checked submission (`submission`),
log loss and the submission checks (`score`), blend weights and the one clip rule (`blend`), and
blends of several runs' or kernels' outputs (`blend_outputs`)."""
