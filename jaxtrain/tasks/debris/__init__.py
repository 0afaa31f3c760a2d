"""Marine-debris segmentation: 11-band Sentinel-2 patches -> per-pixel debris probability.

layout: the `jaxtrain-debris-v1` HDF5 file layout and its writer; synthetic: the built-in
generator; marida: GeoTIFF reading and the MARIDA converter; reader: validation, the grain
source and training-split statistics; augment: random crops and dihedral moves; loss: Dice +
focal + weighted cross-entropy; evaluation: the debris scores and the validation-tuned
threshold; task: `build` (data, model, loss); predict: sliding-window inference on tiles.
"""

from jaxtrain.task import System
from jaxtrain.tasks.debris import predict, task  # modules: `predict` stays the module's name
from jaxtrain.tasks.debris.checks import validate
from jaxtrain.tasks.debris.report import REPORT

SYSTEM = System(name="debris", description="marine debris segmentation of 11-band Sentinel-2 "
                "patches (per-pixel debris probability and mask)", build=task.build,
                predict=predict.predict, validate=validate,
                export_target=("debris_f1", 0.50), report=REPORT)  # the seed's 0.50-0.70 F1
