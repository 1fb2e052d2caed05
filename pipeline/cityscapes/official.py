"""Runs cityscapesscripts' instance-level evaluation in a child process, confined to a folder.

`python -m maskray.pipeline.cityscapes.official WORKDIR` reads WORKDIR/request.json
(`{"ground_truth": [instanceIds PNGs], "results": folder}`) and writes WORKDIR/result.json (the
official JSON: AP per class and overlap, averages) and prints the official table.

Why a child: the official script writes `matches.json` into the current directory, caches
ground truth in a `gtInstances.json` inside its own package by default, and calls `sys.exit`
on bad input. Here its cache and export file go to WORKDIR, the child runs with WORKDIR as its
current directory, and an exit is just the child's exit code.
"""

from __future__ import annotations

import json
import os
import sys

REQUEST, RESULT, CACHE = "request.json", "result.json", "gtInstances.json"


def _numpy_compatibility(official) -> None:
    """Two spots where the official script (2.3.0) predates NumPy 2.x, mended in this child only.

    It calls `np.in1d`, which NumPy 2.4 removed (`isin` on the flattened array is what it was),
    and its JSON writer fails on the NumPy integers that `np.count_nonzero` now returns.
    """
    import numpy as np

    if not hasattr(np, "in1d"):
        np.in1d = lambda values, tests, **options: np.isin(np.ravel(values), tests, **options)

    def write_json(data, file_name):
        with open(file_name, "w") as stream:
            stream.write(json.dumps(data, default=lambda o: o.item() if isinstance(o, np.generic) else o.__dict__,
                                    sort_keys=True, indent=4))

    official.writeDict2JSON = write_json


def run(workdir: str) -> dict:
    workdir = os.path.abspath(workdir)
    with open(os.path.join(workdir, REQUEST)) as stream:
        request = json.load(stream)
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official

    _numpy_compatibility(official)

    args = official.CArgs()
    vars(args).update(vars(official.args))  # the official defaults (overlaps, region sizes, ...)
    args.predictionPath = os.path.abspath(request["results"])
    args.predictionWalk = None
    args.gtInstancesFile = os.path.join(workdir, CACHE)
    args.exportFile = os.path.join(workdir, RESULT)
    args.JSONOutput, args.quiet, args.colorized, args.csv = True, True, False, False
    args.instLabels = []
    ground_truth = [os.path.abspath(path) for path in request["ground_truth"]]
    # The official lookup finds each picture's text file in the results folder by its name.
    predictions = [official.getPrediction(path, args) for path in ground_truth]
    result = official.evaluateImgLists(predictions, ground_truth, args)
    official.printResults(result["averages"], args)
    return result


if __name__ == "__main__":
    os.chdir(sys.argv[1])
    run(sys.argv[1])
