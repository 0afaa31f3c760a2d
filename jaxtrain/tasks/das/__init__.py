"""DAS (distributed acoustic sensing): earthquakes and quarry blasts on an optical fibre.

schema: the names a data directory uses; synthetic: the built-in data generator; reader:
vendor layouts and recordings; labels: labels.json, file and window labels; windows: the
window index and grain source; augment: training augmentation; model: the classifiers;
evaluation: window and file scores; task: the `Task` of a config; predict: inference to CSV.
"""

from jaxtrain.task import System
from jaxtrain.tasks.das.checks import validate
from jaxtrain.tasks.das.predict import predict
from jaxtrain.tasks.das.report import REPORT
from jaxtrain.tasks.das.task import build

SYSTEM = System(name="das", description="earthquake / quarry blast / noise in DAS recordings",
                build=build, predict=predict, validate=validate,
                # ours (the seed names none): files are what a user labels
                export_target=("file_accuracy", 0.95), report=REPORT)
