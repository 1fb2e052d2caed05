"""Scoring an output against ground truth: COCO AP (with track metrics) and Cityscapes AP.

Above pipeline/export (results in each format) and the format helpers (coco/, cityscapes/)."""
