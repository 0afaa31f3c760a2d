"""Violence detection in video clips: frames sampled from each clip, encoded once by a frozen
VGG19, the cached per-frame features classified by an LSTM with attention.

video: PyAV reading and frame sampling; synthetic: the built-in clip generator (RWF-2000
layout); clips: listing a dataset folder; encoder + features: the feature-extraction stage
and its HDF5 cache (extract: its command); model: the LSTM-attention classifier; loss: focal
+ smoothing + class weights; evaluation: the scores and the per-clip table; baseline:
logistic regression on frame-difference energy; checks: `validate`; task: `build`; predict: CSV
for new videos.
"""

from jaxtrain.task import System
from jaxtrain.tasks.violence.checks import validate
from jaxtrain.tasks.violence.predict import predict
from jaxtrain.tasks.violence.report import REPORT
from jaxtrain.tasks.violence.task import build

SYSTEM = System(name="violence", description="violence detection in video clips (VGG19 frame "
                "features, LSTM with attention)", build=build, predict=predict,
                validate=validate, export_target=("accuracy", 0.93),  # the seed's 93-95%
                # how the feature-extraction stage is parallelized and reports progress
                safe_to_change=("data.decode_workers", "data.progress_every_s",
                                "data.synthetic.workers", "encoder.batch_frames",
                                "encoder.batch_clips"), report=REPORT)
