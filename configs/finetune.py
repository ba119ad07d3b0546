"""Fine-tune the shipped FER2013 model on your own faces:
`python cnn_run.py configs/finetune.py --data_dir=MY_FACES`.

The model's layers, weights, 48x48 grayscale input and augmentation layers come from
models/fer2013.keras (from its first network: the shipped file averages three); classes
it knows (through the aliases: angry = anger) keep their output rows, new ones
(contempt) get fresh rows. Two epochs train only the new output layer, so fresh rows do not send large gradients through the pretrained layers; then
every layer trains for 30 epochs at a quarter of configs/modern.py's peak rate, since
the weights start close to a good solution. Written once, before any measurement, and
not tuned on the shared set (see the README for what it gives there).
"""

INIT_FROM = "models/fer2013.keras"
FREEZE_EPOCHS = 2

AUGMENT = False
CLASS_WEIGHTS = False

EPOCHS = 30
OPTIMIZER = "adamw"
LEARNING_RATE = 5e-4
WEIGHT_DECAY = 1e-4
LR_SCHEDULE = "cosine"
WARMUP_EPOCHS = 1
LABEL_SMOOTHING = 0.1
