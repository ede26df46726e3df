"""Models: the backbone registry (`backbones`, with the EfficientNet-Lite port and the torch-file reader
it loads from), the feature cache on top of it (`features`), heads trained on features (`heads`), and
the networks trained from scratch (`scratch`)."""
