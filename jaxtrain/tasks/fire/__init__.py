"""Fire detection: 60-minute windows of 6 sensor channels in 5 areas -> normal/warning/fire.

layout: the `jaxtrain-fire-v1` HDF5 file layout; reader: validates and reads it; synthetic:
the built-in generator; normalize: model inputs from readings; task: `build` (data, splits,
model, loss); evaluation: the scores; baseline: logistic regression for comparison;
features / ensemble / importance: the ML ensemble trained after the transformer (tree
members on window features, hard and soft votes, feature importance); predict: risk for
every window of a new log, with the combination the run chose.
"""

from jaxtrain.task import System
from jaxtrain.tasks.fire.checks import validate
from jaxtrain.tasks.fire.predict import predict
from jaxtrain.tasks.fire.report import REPORT
from jaxtrain.tasks.fire.task import build

SYSTEM = System(name="fire", description="fire detection from multi-area sensor logs "
                "(normal / warning / fire, and a risk score)", build=build, predict=predict,
                validate=validate, report=REPORT,
                export_target=("accuracy", 0.95))  # the seed's target
