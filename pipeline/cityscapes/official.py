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
import types

import numpy

REQUEST, RESULT, CACHE = "request.json", "result.json", "gtInstances.json"


class _NumpyForTheOfficialScript(types.ModuleType):
    """NumPy as the official script (2.3.0, written before NumPy 2) expects it, for its module only.

    - `in1d`, which NumPy 2.4 removed: `isin` on the flattened array is what it was.
    - `cumsum` of nothing gives [0]: for a class with ground truth and predictions where no
      prediction matched and every unmatched one was ignored (void or group pixels), the script
      indexes the last element of an empty cumulative sum and fails; with [0] it goes on to
      the AP that case has, 0.
    Everything else is NumPy itself.
    """

    def __getattr__(self, name):
        return getattr(numpy, name)

    @staticmethod
    def in1d(values, tests, **options):
        return numpy.isin(numpy.ravel(values), tests, **options)

    @staticmethod
    def cumsum(values, *args, **options):
        total = numpy.cumsum(values, *args, **options)
        return total if total.size else numpy.zeros(1, total.dtype)


def _write_json(data, file_name) -> None:
    """The script's JSON writer, also for the NumPy integers `np.count_nonzero` now returns."""
    with open(file_name, "w") as stream:
        stream.write(json.dumps(data, default=lambda o: o.item() if isinstance(o, numpy.generic) else o.__dict__,
                                sort_keys=True, indent=4))


def run(workdir: str) -> dict:
    workdir = os.path.abspath(workdir)
    with open(os.path.join(workdir, REQUEST)) as stream:
        request = json.load(stream)
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official

    official.np = _NumpyForTheOfficialScript("numpy")
    official.writeDict2JSON = _write_json

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
