"""How cnn_eval.py finds and crops faces for a model: as it was trained, unless told.

Offers:
  RECORDED                      the face settings a model file records (run_params.model_info)
  FaceSettings                  crop, detector, margin, align, draw_landmarks, and `line`:
                                   one sentence saying which is used and where it came from
  for_model(saved, params)      -> FaceSettings for a model whose file recorded `saved`
  for_trained(trained, params)  -> the same, from cnn_eval.trained_params's `trained`

A model trained with --crop_faces=True saw faces found by one detector, cut with one
margin, aligned or not: eval finds and crops faces the same way, read from the model
file, so a model is used as it was trained without being told. A value the user sets
explicitly (command line or configuration file) wins over the file, and the printed
line says so. A model file from before the detector was recorded was trained on Haar
crops without alignment, and is used so. For a model not trained on crops, the
parameters' values (cnn_params.py, or as given) are used.
"""

from dataclasses import dataclass

RECORDED = ("crop_faces", "face_margin", "detector", "align")


@dataclass
class FaceSettings:
    """How faces are found and cropped: crop (test sets cropped to their largest face),
    detector ("haar" or "mtcnn"), margin (share of the face's side), align (eyes level,
    scaled by eye distance), draw_landmarks, and line (what is used, and why)."""
    crop: bool
    detector: str
    margin: float
    align: bool
    draw_landmarks: bool
    line: str


def for_model(saved, params):
    """Return FaceSettings from `saved` (RECORDED values read from the model file) and
    `params` (the effective parameters, with "explicit": config.explicit_names)."""
    explicit = params.get("explicit", set())
    trained_on_crops = bool(saved.get("crop_faces"))
    if trained_on_crops:  # older files recorded no detector: they were Haar, unaligned
        values = {"detector": saved.get("detector", "haar"),
                  "face_margin": saved.get("face_margin", params["face_margin"]),
                  "align": bool(saved.get("align", False))}
        origin = "as the model was trained (its file)"
    else:
        values = {name: params[name] for name in ("detector", "face_margin", "align")}
        origin = "the parameters' values (the model was not trained on face crops)"
    given = [name for name in ("detector", "face_margin", "align") if name in explicit]
    values.update({name: params[name] for name in given})
    crop = (bool(params["crop_faces"]) if "crop_faces" in explicit
            else trained_on_crops or bool(params["crop_faces"]))
    line = (f"Faces: detector {values['detector']}, margin {values['face_margin']}, "
            f"{'aligned' if values['align'] else 'not aligned'}: {origin}"
            + (f"; {', '.join('--' + n for n in given)} from the command line"
               if given and trained_on_crops else "") + ".")
    return FaceSettings(crop, values["detector"], float(values["face_margin"]),
                        bool(values["align"]), bool(params.get("draw_landmarks", False)), line)


def for_trained(trained, params):
    """FaceSettings (crop?, detector, margin, align): as the model was trained, unless
    set explicitly (`trained`: cnn_eval.trained_params's)."""
    return for_model(trained.get("trained_faces", {}), params)
