"""maskray: Mask R-CNN instance segmentation over large image and video collections on Ray.

Installed, this repository is one import package: `maskray.cli` (the command line),
`maskray.jobs` (what a user asks for), `maskray.pipeline` (inputs, execution, output, COCO
tools, rendering) and `maskray.models` (the networks). Imports run one way:
cli -> jobs -> pipeline -> models. Importing `maskray` itself loads nothing heavy.
"""
