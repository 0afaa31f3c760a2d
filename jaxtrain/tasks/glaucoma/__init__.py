"""Referable-glaucoma screening on fundus photographs (AIROGS): EfficientNet-B0.

airogs: the labels CSV + JPEG tree; synthetic: the built-in fundus generator (that layout);
images: reduced-size decoding, CLAHE and the uint8 HDF5 image cache; augment: the reference
augmentation and 5-view TTA; model: EfficientNet-B0 (jaxtrain.models.efficientnet) with the
reference head, trainable sets; keras_port: Keras weights -> variables; evaluation: AUC,
AIROGS pAUC and sensitivity at 95% specificity, the tuned threshold; baseline: logistic
regression; task: `build`; checks: config validation; predict: CSV of referral decisions.
"""

from jaxtrain.task import System
from jaxtrain.tasks.glaucoma.checks import validate
from jaxtrain.tasks.glaucoma.predict import predict
from jaxtrain.tasks.glaucoma.report import REPORT
from jaxtrain.tasks.glaucoma.task import build

SYSTEM = System(name="glaucoma", description="referable-glaucoma screening of fundus "
                "photographs (AIROGS; EfficientNet-B0)", build=build, predict=predict,
                validate=validate, report=REPORT,
                export_target=("pauc", 0.55))  # the seed's V2 pAUC 0.55-0.65
