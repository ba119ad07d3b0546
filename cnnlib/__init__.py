"""What the report's five scripts use: one package below them, never importing them back.

Modules, roughly in the order a run uses them:
  quiet           TensorFlow's log level, its known harmless start-up notices, and the
                  suite's warnings as one line
  errors          UserError and its kinds: one sentence for a user's mistake
  config          `--name=value` overrides and configuration files, type-checked
  config_file     a configuration file's NAME = value lines, read without running it
  atomic          files written whole or not at all (temporary name, then rename)
  locks           locks between processes (flock) that die with their holder
  run_params      from a run's parameters to the values the library's calls take
  interrupt       Ctrl-C and SIGTERM: one path, a watchdog, unfinished outputs removed
  devices         the devices a run trains on, chosen before TensorFlow starts
  cluster         the strategy and the workers of a cluster kept in step (DeviceSetup)
  labels          class names, aliases, --classes=auto, names read from file names
  layouts         finding labelled images: split class folders, a labels CSV, one tree
  labels_file     reading a labels CSV: paths, labels, split and subject columns
  files           listing image files, identical files, lists of paths
  decode          decoding and resizing image files by their content
  cache           the disk cache of decoded images
  standin         the synthetic stand-in for QIDER: counts, writing, the test images
  standin_faces   drawing the stand-in's cartoon faces
  standin_expressions the parameters of a drawn face that carry its expression
  loading         a data set's files found and its splits decoded, the test images
  data_checks     data that cannot train, files shared by the sets, near-duplicates
  prepared        the prepared data of a run (PreparedData)
  runs            run folders, params and history files, the latest run, run state
  resume          going on with an interrupted run, its saved files checked first
  checkpoints     the end-of-epoch writes of a training run (model, best, history, state)
  layer_table     the layer table (LAYERS or --layers) checked before a model is built
  precision       mixed precision: dtype policies, a model moved between them
  multiworker     the training loop of --distribute=multiworker
  metrics         predictions, scores, confusion and intervals (Scores); writes nothing
  records         every file of a run or of a scored test set, from memory; Table 3
  plots           figures (matplotlib, PNG)
  faces           faces in photos: find (Haar or MTCNN), align, crop and mark them
  haar            OpenCV's Haar cascades: boxes, no landmarks
  landmarks       MTCNN: boxes with five landmarks, loaded once per process
  align           eyes level and a fixed scale before the square crop
  face_settings   the detector, margin and alignment a model was trained with
  video           expressions of the faces in a video or a webcam's frames
  scoring         image files, photos' faces and videos scored and printed for cnn_eval
  finetune        a run that starts from a saved model: class map, new head, frozen backbone
  ensemble        several trained networks shipped as one model, their answers averaged
  intervals       Wilson and bootstrap intervals, paired comparison of two models
  compare         `python -m cnnlib.compare A B`: two runs' or prediction files' comparison
  calibration     calibration error, reliability diagrams, temperature scaling
  stored_info     what a saved model carries inside its file, read back checked
  near_duplicates perceptual hashes and near-duplicate groups across sets
  subject_split   a training/validation split that keeps each subject on one side
  export          --export: saved_model, ONNX and TFLite files, verified against Keras
  export_images   the real images an export is verified and int8-calibrated on
  exported        an exported file scored with its own runtime, compared with Keras
  server          --serve: the local page and JSON API
  uploads         an uploaded image checked: body and pixel limits, decoded

Data flows one way: cnn_params -> cnn_data -> cnn_model -> cnn_run / cnn_eval, and
each of them may use this package; nothing here imports one of those scripts.
"""

import os

# TensorFlow reads its log level once, when it loads: set it here, before anything
# imports it. CNN_TF_LOGS=1 brings all of TensorFlow's own lines back (see quiet.py).
if os.environ.get("CNN_TF_LOGS") == "1":
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # OpenCV and its FFmpeg print their own lines for a video they cannot read
    # ("moov atom not found"); faces and video say it in one sentence instead.
    # Read when OpenCV loads, so set here too; CNN_TF_LOGS=1 leaves them on.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's AV_LOG_QUIET
