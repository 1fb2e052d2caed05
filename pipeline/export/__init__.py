"""Exports of an output to the files other tools read: one `Exporter` per format (formats.py)."""
