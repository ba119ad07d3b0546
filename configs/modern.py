"""A configuration that learns real faces: `python cnn_run.py configs/modern.py`.

The report's network memorises real photographs (on the shared set: 0.55 validation
accuracy, 0.42 balanced accuracy). This one generalises further with what a modern
small-image CNN uses, all of it switched on here and off in the report's defaults:

- 48x48 grayscale, the native size of FER-style faces: 4x fewer pixels than 96x96,
  so a deeper network fits the same time budget;
- four VGG-style blocks of two 3x3 "same" convolutions with batch normalisation
  (32, 64, 128, 256 filters), a max-pool and dropout 0.25 after each block; global
  average pooling, then one batch-normalised dense layer of 256 with dropout 0.5
  (1.24 million parameters);
- augmentation inside the model, in training only: mirror, +-18 degree rotation,
  10% zoom and shift, 20% contrast, 10% brightness;
- AdamW (peak rate 2e-3, weight decay 1e-4), 3 epochs of warm-up then cosine decay
  to 0 over 60 epochs, and label smoothing 0.1;
- no offline balancing and no class weights: on real data they cost accuracy (0.54
  against 0.63 for the same network) without a better balanced accuracy.

Chosen on a validation split and checked on a test split never used for a choice
(see the README for the numbers and the time).
"""

IMAGE_SIZE = 48

_BLOCK = {"type": "conv", "kernel": 3, "padding": "same", "batchnorm": True}
LAYERS = [
    {**_BLOCK, "units": 32, "pool": 0, "dropout": 0.0},
    {**_BLOCK, "units": 32, "pool": 2, "dropout": 0.25},
    {**_BLOCK, "units": 64, "pool": 0, "dropout": 0.0},
    {**_BLOCK, "units": 64, "pool": 2, "dropout": 0.25},
    {**_BLOCK, "units": 128, "pool": 0, "dropout": 0.0},
    {**_BLOCK, "units": 128, "pool": 2, "dropout": 0.25},
    {**_BLOCK, "units": 256, "pool": 0, "dropout": 0.0},
    {**_BLOCK, "units": 256, "pool": 2, "dropout": 0.25},
    {"type": "global_pool"},
    {"type": "dense", "units": 256, "batchnorm": True, "dropout": 0.5},
    {"type": "dense", "units": 8},
]

AUGMENT = False
CLASS_WEIGHTS = False
AUG_FLIP = True
AUG_ROTATION = 0.05
AUG_ZOOM = 0.1
AUG_TRANSLATION = 0.1
AUG_CONTRAST = 0.2
AUG_BRIGHTNESS = 0.1

EPOCHS = 60
OPTIMIZER = "adamw"
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4
LR_SCHEDULE = "cosine"
WARMUP_EPOCHS = 3
LABEL_SMOOTHING = 0.1
