"""Violence detection in video clips: frames sampled from each clip, encoded once by a frozen
VGG19, the cached per-frame features classified by an LSTM with attention.

video: PyAV reading and frame sampling; synthetic: the built-in clip generator (RWF-2000
layout); clips: listing a dataset folder; encoder + features: the feature-extraction stage
and its HDF5 cache (extract: its command); model: the LSTM-attention classifier; loss: focal
+ smoothing + class weights; evaluation: the scores and the per-clip table; baseline:
logistic regression on frame-difference energy; task: `build` and `validate`; predict: CSV
for new videos.
"""

from jaxtrain.task import System
from jaxtrain.tasks.violence.predict import predict
from jaxtrain.tasks.violence.task import build, validate

SYSTEM = System(name="violence", description="violence detection in video clips (VGG19 frame "
                "features, LSTM with attention)", build=build, predict=predict,
                validate=validate)
