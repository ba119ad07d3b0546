"""The stand-in's expressions: the parameters of a drawn face that carry its class.

Offers:
  expression_features(expression, rng, intensity=None) -> {feature: value} of one face
      of class index `expression` (0..7): brows, eyes, mouth, nose and cheek lines,
      the neutral face moved part of the way toward the class, plus per-person jitter

Everything random comes from the numpy Generator given; standin_faces.py draws the
features.
"""

import numpy as np

def _neutral_features():
    """Return the feature parameters of a relaxed, neutral face."""
    return {
        "brow_tilt": 0.0,     # + inner ends down (anger), - inner ends up (sad, fear)
        "brow_raise": 0.0,    # + brows higher above the eyes
        "brow_pinch": 0.0,    # + inner ends pulled toward the nose
        "eye_open": 1.0,      # <1 narrowed, >1 wide open
        "gaze_down": 0.0,     # + pupils lowered
        "mouth_curve": 0.0,   # + smile (corners up), - frown
        "mouth_open": 0.0,    # 0 closed, ~1 large open mouth
        "mouth_width": 1.0,   # relative mouth width
        "mouth_skew": 0.0,    # one corner lifted (disgust)
        "mouth_wave": 0.0,    # wavy, uneasy lip line
        "nose_wrinkle": 0.0,  # wrinkle lines on the nose bridge
        "cheek_lines": 0.0,   # smile lines beside the mouth
        "teeth": 0.0,         # >0.5 shows teeth when the mouth is open
    }


def _expression_target(expression, rng):
    """Return the feature parameters of class `expression` at full intensity.

    Some classes have variants (open or closed smile, bared teeth), chosen
    with `rng`, so one class is not one single drawing.
    """
    target = _neutral_features()
    if expression == 0:  # anger: brows down and together, narrow eyes, tight frown
        target.update(brow_tilt=1.0, brow_raise=-0.6, brow_pinch=0.6, eye_open=0.6,
                      mouth_curve=-0.35, mouth_width=0.85)
        if rng.random() < 0.3:  # bared teeth
            target.update(mouth_open=0.3, teeth=1.0, mouth_width=1.0)
    elif expression == 1:  # disgust: one-sided raised lip, wrinkled nose, narrow eyes
        target.update(brow_tilt=0.4, brow_raise=-0.4, brow_pinch=0.3, eye_open=0.65,
                      mouth_curve=-0.3, mouth_skew=1.0, mouth_wave=0.8, nose_wrinkle=1.0)
        if rng.random() < 0.35:
            target.update(mouth_open=0.2, teeth=1.0)
    elif expression == 2:  # fear: raised, pinched brows, wide eyes, stretched open mouth
        target.update(brow_tilt=-0.8, brow_raise=0.7, brow_pinch=0.6, eye_open=1.6,
                      mouth_curve=-0.45, mouth_open=0.55, mouth_width=1.3)
        if rng.random() < 0.4:
            target.update(teeth=1.0)
    elif expression == 3:  # happy: smile, squinted eyes, smile lines
        target.update(brow_raise=0.1, eye_open=0.75, mouth_curve=1.1, mouth_width=1.25,
                      cheek_lines=1.0)
        if rng.random() < 0.5:  # open smile with teeth
            target.update(mouth_open=0.55, teeth=1.0)
    elif expression == 4:  # negative: a milder mix of sad and anger
        toward_anger = rng.random()
        target.update(brow_tilt=0.6 * toward_anger - 0.6 * (1 - toward_anger),
                      brow_raise=-0.3 * toward_anger + 0.1 * (1 - toward_anger),
                      brow_pinch=0.3, eye_open=0.85, gaze_down=0.4 * (1 - toward_anger),
                      mouth_curve=-0.6, mouth_width=0.92, mouth_wave=0.25)
    elif expression == 5:  # neutral
        pass
    elif expression == 6:  # sad: frown, inner brow ends up, downcast eyes
        target.update(brow_tilt=-1.0, brow_raise=0.2, brow_pinch=0.3, eye_open=0.8,
                      gaze_down=1.0, mouth_curve=-1.0, mouth_width=0.9)
    elif expression == 7:  # surprise: high brows, wide eyes, round open mouth
        target.update(brow_tilt=-0.1, brow_raise=1.1, eye_open=1.7, mouth_open=1.0,
                      mouth_width=0.6)
    else:
        raise ValueError(f"expression must be a class index 0..7, got {expression!r}.")
    return target


def _person_jitter_scales():
    """Return the spread of each parameter between individuals' resting faces."""
    return {
        "brow_tilt": 0.18, "brow_raise": 0.18, "brow_pinch": 0.12, "eye_open": 0.12,
        "gaze_down": 0.15, "mouth_curve": 0.16, "mouth_open": 0.04, "mouth_width": 0.08,
        "mouth_skew": 0.1, "mouth_wave": 0.1, "nose_wrinkle": 0.08, "cheek_lines": 0.08,
        "teeth": 0.0,
    }


def expression_features(expression, rng, intensity=None):
    """Return the feature parameters of one face of class `expression`.

    The face is the neutral face moved a random fraction (`intensity`) of the
    way toward the class target, plus per-person jitter, so weak expressions
    are genuinely close to neutral and to neighbouring classes.
    """
    target = _expression_target(expression, rng)
    if intensity is None:
        intensity = rng.uniform(0.4, 1.0)
        if expression == 4:  # the "negative" class is milder by definition
            intensity *= 0.75
    features = {}
    for name, rest in _neutral_features().items():
        value = rest + intensity * (target[name] - rest)
        features[name] = value + rng.normal(0.0, _person_jitter_scales()[name])
    features["eye_open"] = float(np.clip(features["eye_open"], 0.3, 2.0))
    features["mouth_width"] = float(np.clip(features["mouth_width"], 0.45, 1.5))
    for name in ("mouth_open", "nose_wrinkle", "cheek_lines", "gaze_down", "mouth_skew", "mouth_wave"):
        features[name] = float(np.clip(features[name], 0.0, 1.3))
    features["skew_side"] = 1.0 if rng.random() < 0.5 else -1.0
    return features
