"""The export formats, by name: a new format is one module with an `Exporter` and one entry here.

Entries name their class as `module:Class`, imported when used, so `maskray export --help`
(and every other command) does not load every format's libraries.
"""

from __future__ import annotations

from importlib import import_module

from maskray.errors import UsageError

FORMATS = {
    "coco": "maskray.pipeline.export.coco:CocoExporter",
    "mots": "maskray.pipeline.export.mots:MotsExporter",
    "cityscapes": "maskray.pipeline.export.cityscapes:CityscapesExporter",
    "cvat": "maskray.pipeline.export.cvat:CvatExporter",
    "label-studio": "maskray.pipeline.export.label_studio:LabelStudioExporter",
    "yolo": "maskray.pipeline.export.yolo:YoloExporter",
}


def exporter_class(name: str):
    """The `Exporter` subclass of format `name`; UsageError naming the formats otherwise."""
    try:
        module, cls = FORMATS[name].split(":")
    except KeyError:
        raise UsageError(f"unknown export format {name!r}; choose one of: {', '.join(FORMATS)}") from None
    return getattr(import_module(module), cls)
