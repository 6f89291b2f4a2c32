"""Sinks: where batches leave the pipeline (the store, files, stdout, Redis streams)."""
