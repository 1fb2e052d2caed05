"""Cityscapes: its file layout, its 8 instance classes, export to and evaluation with its official scripts."""
