"""Parameters of the suite: values only, no code that runs.

Edit this file to try another architecture or data set, or override any value on
the command line of `cnn_run.py` / `cnn_eval.py` with its lower-case name, e.g.
`python cnn_run.py --epochs=5 --dropout=False`. The numbers come from the
report (see the README); each is tagged with the table it comes from.
"""

# ---------------------------------------------------------------- classes
# The 8 expressions in the report's order C1..C8. A class folder or label may use
# the English name or the report's Portuguese one (ALIASES), in any letter case.
# ["auto"] (--classes=auto) takes the classes found in the data, sorted by name.
CLASSES = ["anger", "disgust", "fear", "happy", "negative", "neutral", "sad", "surprise"]
ALIASES = {
    "anger": ["raiva", "angry"],
    "disgust": ["nojo", "disgusted"],
    "fear": ["medo", "fearful", "afraid"],
    "happy": ["feliz", "happiness"],
    "negative": ["negativa"],
    "neutral": ["neutra"],
    "sad": ["triste", "sadness"],
    "surprise": ["surpresa", "surprised"],
}

# ---------------------------------------------------------------- data
# Folder holding train/<class>/* and validation/<class>/*. The default is the
# synthetic stand-in, generated on first use; point it at QIDER to use the real data.
DATA_DIR = "data/synthetic"
# The 8 new images of the report (one per class, file named after its class).
TEST_DIR = "test_images"
# Every training run writes a new folder here; nothing in it is ever overwritten.
RUNS_DIR = "runs"
# Decoded, resized images are cached here so a second run starts in seconds;
# "" turns the cache off. Safe to delete at any time.
CACHE_DIR = ".cache"

# Layouts (see the README): train/ + validation/ class folders; or a labels file
# (CSV) in DATA_DIR; or one <class>/ folder tree. The last two are split below.
LABELS_FILE = "legend.csv"   # CSV in DATA_DIR with an image and a label column
IMAGE_COLUMN = "image"       # its column of image paths (relative to the CSV or IMAGES_DIR)
LABEL_COLUMN = "emotion"     # its column of labels
IMAGES_DIR = "images"        # folder beside the CSV holding the images ("" = the CSV's own)
VALIDATION_FRACTION = 0.2    # share of each class held out when the data has no validation/
STRICT = False               # True: an unreadable, conflicting or unlabelled file is an error
MAX_PIXELS = 40_000_000      # the most pixels (width x height, read from the header before
                             # decoding) of an image or video frame, in training, eval, faces
                             # and the server; larger images are skipped in training like
                             # damaged ones, refused elsewhere (a 7700x5200 photo fits)
GROUP_COLUMN = ""            # the labels CSV's subject column: then the training/validation
                             # split keeps each subject on one side ("" = split per class)
DEDUPE = False               # True: near-duplicate images (perceptual hash, found at every
                             # data preparation, listed in duplicates.csv) keep one copy, on
                             # one side only, in memory; off so the report's run is unchanged

# ---------------------------------------------------------------- stand-in
# Training counts of the stand-in: exactly the report's Table 1 "A" row (4521).
STANDIN_TRAIN_COUNTS = [501, 377, 336, 746, 1618, 115, 424, 404]
# Validation images of the stand-in, in the same class proportions (report: 1346).
STANDIN_VALIDATION_TOTAL = 1346

# ---------------------------------------------------------------- preprocessing
IMAGE_SIZE = 96      # every image is resized (never cropped) to this square size
CHANNELS = 1         # 1 = grayscale, as the report decodes; 3 = RGB
AUGMENT = True       # balance the training set by mirrors and noise (Table 1)
NOISE_SIGMA = 0.05   # std of the Gaussian noise of augmented copies, pixels in [0, 1]
CLASS_WEIGHTS = True # weight the loss by Equation 1

# ---------------------------------------------------------------- on-the-fly augmentation
# Keras preprocessing layers inside the model, active only while training, on top of
# (or instead of) Table 1's offline balancing. All off in the report's configuration.
AUG_FLIP = False          # random left-right mirror
AUG_ROTATION = 0.0        # max rotation, as a fraction of a full turn (0.05 = 18 degrees)
AUG_ZOOM = 0.0            # max zoom in or out, as a fraction of the size (0.1 = 10%)
AUG_TRANSLATION = 0.0     # max shift, as a fraction of the size
AUG_CONTRAST = 0.0        # max contrast change, as a fraction
AUG_BRIGHTNESS = 0.0      # max brightness change, as a fraction of the pixel range

# ---------------------------------------------------------------- model (Table 2)
# One dict a layer, in order. type: "conv" (units = filters, kernel = square size,
# pool = max-pool size after it or 0, padding "valid" or "same", batchnorm: conv
# without bias, then BatchNormalization, then ReLU), "global_pool" (global average
# pooling ends the conv part instead of Flatten) or "dense" (units = neurons,
# batchnorm as for conv). dropout: rate after the layer, 0 for none. The last dense
# layer gets softmax and as many units as there are classes; all others ReLU.
LAYERS = [
    {"type": "conv", "units": 32, "kernel": 3, "pool": 2, "dropout": 0.0},
    {"type": "conv", "units": 16, "kernel": 3, "pool": 0, "dropout": 0.3},
    {"type": "conv", "units": 24, "kernel": 3, "pool": 2, "dropout": 0.1},
    {"type": "dense", "units": 24, "dropout": 0.4},
    {"type": "dense", "units": 16, "dropout": 0.1},
    {"type": "dense", "units": 8, "dropout": 0.0},
]
# The report's two variants: True keeps the dropout rates above, False drops them all.
DROPOUT = True

# ---------------------------------------------------------------- training
EPOCHS = 50           # report: 50
BATCH_SIZE = 32       # report: 32
LEARNING_RATE = 1e-3  # Adam (the peak rate, with a schedule)
OPTIMIZER = "adam"    # "adam" (report) or "adamw" (Adam with decoupled weight decay)
WEIGHT_DECAY = 0.0    # AdamW's weight decay; 0 with "adam"
LABEL_SMOOTHING = 0.0 # 0 = the report's plain cross-entropy; e.g. 0.1 softens the targets
LR_SCHEDULE = "none"  # "none" (report), "cosine" (warm-up, then cosine decay to 0) or
                      # "plateau" (halve the rate after 3 epochs without a better val loss)
WARMUP_EPOCHS = 0     # epochs of linear warm-up before the cosine decay
SEED = 1234           # one seed makes a run repeatable (data order, noise, weights)
TRAINING_SEED = -1    # -1: SEED throughout; else the seed of the starting weights, dropout,
                      # data order and the model's augmentation layers only (SEED still draws
                      # the split and Table 1's copies): another network on the same split
VERBOSE = 1           # Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch

# ---------------------------------------------------------------- runs
COMPARE = False        # True: train both report variants (no dropout, dropout) into one
                       # run folder with Table 3, Figures 1 and 2 and an overlay figure
RESUME = ""            # a run folder (or its name in RUNS_DIR) to continue after Ctrl-C
EARLY_STOPPING = 0     # patience in epochs on validation loss, then the best epoch's
                       # weights are kept; 0 = off (report: 50 epochs)
TENSORBOARD = False    # also write TensorBoard logs into the run folder
DETERMINISTIC = True   # TensorFlow op determinism: same seed and data, same history

# ---------------------------------------------------------------- fine-tuning
# Start from a saved model instead of random weights (e.g. models/fer2013.keras): its
# layers, weights, image size and channels. Classes it knows keep their output rows
# (through ALIASES), new ones get fresh rows, and CLASSES defaults to "auto".
INIT_FROM = ""         # a .keras file written by cnn_run.py; "" = from scratch (the report)
FREEZE_EPOCHS = 0      # with INIT_FROM: epochs that train only the output layer first,
                       # before EPOCHS of every layer

# ---------------------------------------------------------------- using a trained model
# Test sets: a labels CSV may mark each row's split in this column (train, validation,
# test; FER2013's Training/PublicTest/PrivateTest too). Rows marked test, like a test/
# folder beside train/, become Table 3's "test" column instead of TEST_DIR.
SPLIT_COLUMN = "split"
# Faces (OpenCV's detector) in the images given to cnn_eval.py: "true" finds and scores
# every face of every image; "false" scores each image whole; "auto" scores an image
# whole when it is already a face crop (its face covers a quarter of it or more, or no
# face is found and it is at most 400 px), else each of its faces.
FACES = "auto"
CROP_FACES = False     # training: crop each image to its largest face (sets of whole photos)
FACE_MARGIN = 0.1      # margin around a detected face, a share of its side on each side
                       # (the shared real set's crops frame the detector's box about so)
MIN_FACE_SIZE = 30     # smallest face looked for, in pixels (24 is the detector's own limit)
# The face detector, everywhere faces are found (photos, videos, the webcam, CROP_FACES):
# "haar" (OpenCV's cascades, boxes only) or "mtcnn" (the mtcnn package: boxes and five
# landmarks, eyes, nose, mouth corners). MTCNN: on the shared set it finds a face in
# 0.986 of the images against 0.968 and fires on none of 281 faceless images against 56,
# at 8 video frames/s against 23 (docs/faces.md).
DETECTOR = "mtcnn"
ALIGN = False          # turn each face upright (eyes level) and scale it by its eye distance
                       # before the square crop; needs "mtcnn"; off: it did not help
                       # (0.531 against 0.533 accuracy over two seeds, docs/faces.md)
DRAW_LANDMARKS = False # mark the five landmarks on annotated photos and videos (MTCNN)
# Video: cnn_eval.py clip.mp4 (any format OpenCV reads), or a webcam.
CAMERA = -1            # webcam index to read (0 = the first); -1 = none
MAX_FRAMES = 0         # stop a video or the webcam after this many frames; 0 = all
# Faces and images whose top (calibrated) probability is below this are shown as
# "uncertain" instead of a class, in every output of cnn_eval.py; 0.0 = off.
MIN_CONFIDENCE = 0.0
SMOOTHING = 0.5        # seconds: moving average of each face's probabilities in the
                       # expression-over-time figure (0 = raw; the CSV is always raw)

# ---------------------------------------------------------------- devices and scale
# Where and how training runs; none of these changes what the report trains.
# BATCH_SIZE is what one replica (device) sees: with N replicas each step takes
# N x BATCH_SIZE images (the global batch) and the learning rate stays as set.
DEVICE = "auto"          # "auto": a GPU if TensorFlow sees one, else the CPU; "gpu": a GPU,
                         # or an error saying why none is usable; "cpu": never a GPU
DISTRIBUTE = "none"      # "none": one device; "mirrored": every local GPU (or CPU_DEVICES);
                         # "multiworker": the machines of TF_CONFIG (README), one process each
CPU_DEVICES = 1          # with "mirrored" and no GPU: logical CPU devices to mirror over
MIXED_PRECISION = "none" # "none" (float32, the report's), "bfloat16" or "float16"; the
                         # output layer and the saved model stay float32
