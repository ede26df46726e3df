"""Predict: the test set's predictions as a clipped, checked submission (`submission`), blend weights
and the one clip rule (`blend`), and blends of several runs' or kernels' outputs (`blend_outputs`).
The metric and the submission checks they apply are kit/score.py's."""
