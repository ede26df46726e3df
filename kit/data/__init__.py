"""Data: decoded images with named skips, the training index less what `clean` excluded, batches
and test-time views, the pixel cache that end-to-end training reads, and the offline demo set."""
