"""Drawing the synthetic stand-in's cartoon faces: one face of one expression.

QIDER is not public, so the stand-in draws faces of the 8 expressions
procedurally. Offers:
  draw_face(expression, rng, *, size=None, mode=None, intensity=None) -> PIL.Image.Image
      one face of class index `expression` (0..7), drawn from a numpy Generator

Everything random comes from the Generator it is given, so the same stream draws
the same face. The features of each expression come from standin_expressions.py;
writing whole data sets is standin.py's work.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cnnlib.standin_expressions import expression_features


# ---------------------------------------------------------------------------
# Appearance that does not carry the class
# ---------------------------------------------------------------------------

def _random_image_size(rng):
    """Return (width, height) in 48..256 px, square about half of the time."""
    width = int(rng.integers(48, 257))
    if rng.random() < 0.5:
        return width, width
    height = int(np.clip(round(width * rng.uniform(0.75, 1.33)), 48, 256))
    return width, height


def _random_skin(rng):
    """Return an RGB skin tone between dark brown and pale."""
    light = rng.uniform(0.0, 1.0)
    dark_tone, pale_tone = np.array([92, 58, 40]), np.array([250, 222, 198])
    tone = dark_tone + light * (pale_tone - dark_tone) + rng.normal(0, 8, 3)
    return tuple(int(v) for v in np.clip(tone, 0, 255))


def _random_look(rng):
    """Return the person, framing and accessories of one face as a dict."""
    hair_colours = [(25, 20, 18), (60, 40, 25), (110, 75, 40), (200, 165, 100), (150, 150, 150), (120, 40, 20)]
    return {
        "skin": _random_skin(rng),
        "hair_style": rng.choice(["none", "short", "long", "fringe"], p=[0.2, 0.45, 0.25, 0.1]),
        "hair_colour": hair_colours[int(rng.integers(len(hair_colours)))],
        "glasses": rng.random() < 0.12,
        "face_aspect": rng.uniform(0.72, 0.92),   # half-width / half-height
        "face_fill": rng.uniform(0.66, 0.88),      # face height / shorter image side
        "offset": (rng.uniform(-0.06, 0.06), rng.uniform(-0.02, 0.06)),
        "angle": float(np.clip(rng.normal(0.0, 6.0), -15.0, 15.0)),
        "line_scale": rng.uniform(1.0, 1.4),
        "shirt": tuple(int(v) for v in rng.integers(20, 235, 3)),
        "gaze_side": rng.uniform(-0.5, 0.5),
    }


def _shade(colour, factor, alpha=255):
    """Return `colour` scaled by `factor` as an RGBA tuple."""
    return tuple(min(255, max(0, int(c * factor))) for c in colour[:3]) + (alpha,)


def _blend(colour_a, colour_b, weight, alpha=255):
    """Return the RGBA mix of two colours, `weight` of the way from a to b."""
    weight = min(1.0, max(0.0, float(weight)))
    return tuple(int(a + weight * (b - a)) for a, b in zip(colour_a[:3], colour_b[:3])) + (alpha,)


def _linear_ramp(width, height, direction):
    """Return a (height, width) float32 array running from about -0.5 to 0.5 along `direction` (radians)."""
    xs = (np.arange(width, dtype=np.float32) / width - 0.5) * np.cos(direction)
    ys = (np.arange(height, dtype=np.float32) / height - 0.5) * np.sin(direction)
    return ys[:, None] + xs[None, :]


def _draw_background(width, height, rng):
    """Return an RGB background: flat colour, gradient or blotchy texture."""
    kind = rng.choice(["flat", "gradient", "texture"], p=[0.35, 0.4, 0.25])
    base = rng.integers(0, 256, 3).astype(np.float32)
    if kind == "flat":
        pixels = np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    elif kind == "gradient":
        other = rng.integers(0, 256, 3).astype(np.float32)
        direction = rng.uniform(0, 2 * np.pi)
        ramp = _linear_ramp(width, height, direction)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        pixels = base + ramp[..., None] * (other - base)
    else:
        cells = int(rng.integers(3, 12))
        blotches = rng.normal(0, rng.uniform(15, 60), (cells, cells, 3)) + base
        blotch_image = Image.fromarray(np.clip(blotches, 0, 255).astype(np.uint8), "RGB")
        pixels = np.asarray(blotch_image.resize((width, height), Image.Resampling.BICUBIC), np.float32)
        grain = rng.standard_normal((height, width, 1), dtype=np.float32)
        pixels = pixels + rng.uniform(2, 12) * grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------
# Drawing the face (all coordinates at working scale)
# ---------------------------------------------------------------------------

def _face_geometry(canvas_w, canvas_h, look):
    """Return centre and half-axes (cx, cy, half_width, half_height) on the working canvas."""
    half_height = look["face_fill"] * min(canvas_w, canvas_h) / 2
    half_width = half_height * look["face_aspect"]
    cx = canvas_w / 2 + look["offset"][0] * canvas_w
    cy = canvas_h / 2 + look["offset"][1] * canvas_h
    return cx, cy, half_width, half_height


def _draw_head(draw, geometry, look):
    """Draw neck, shoulders, hair at the back, ears and the face oval."""
    cx, cy, a, b = geometry
    skin = look["skin"]
    hair = _shade(look["hair_colour"], 1.0)
    if look["hair_style"] == "long":
        draw.rounded_rectangle((cx - 1.15 * a, cy - 1.1 * b, cx + 1.15 * a, cy + 0.9 * b),
                               radius=a, fill=hair)
    draw.ellipse((cx - 1.6 * a, cy + 0.85 * b, cx + 1.6 * a, cy + 0.85 * b + 2.2 * a), fill=_shade(look["shirt"], 1.0))
    draw.rectangle((cx - 0.38 * a, cy + 0.5 * b, cx + 0.38 * a, cy + 1.05 * b), fill=_shade(skin, 0.85))
    for side in (-1, 1):
        ear_x = cx + side * 0.97 * a
        draw.ellipse((ear_x - 0.14 * a, cy - 0.2 * b, ear_x + 0.14 * a, cy + 0.12 * b),
                     fill=_shade(skin, 0.92), outline=_shade(skin, 0.7), width=max(1, int(0.025 * a)))
    draw.ellipse((cx - a, cy - b, cx + a, cy + b), fill=_shade(skin, 1.0),
                 outline=_shade(skin, 0.7), width=max(1, int(0.03 * a)))


def _draw_hair(draw, geometry, look):
    """Draw the hair cap on top of the head (a lower cap for a fringe)."""
    cx, cy, a, b = geometry
    style = look["hair_style"]
    if style == "none":
        return
    hairline_degrees = {"short": 36, "long": 30, "fringe": 16}[style]
    bbox = (cx - 1.06 * a, cy - 1.1 * b, cx + 1.06 * a, cy + 1.02 * b)
    draw.chord(bbox, 180 + hairline_degrees, 360 - hairline_degrees, fill=_shade(look["hair_colour"], 1.0))


def _eye_centres(geometry):
    """Return the (x, y) centres of the left and right eye."""
    cx, cy, a, b = geometry
    eye_y = cy - 0.1 * b
    return [(cx - 0.36 * a, eye_y), (cx + 0.36 * a, eye_y)]


def _draw_eyes(draw, geometry, look, features):
    """Draw eye whites, pupils and lids; openness and gaze follow the features."""
    cx, cy, a, b = geometry
    line = _shade(look["skin"], 0.3)
    line_width = max(1, int(0.035 * a * look["line_scale"]))
    half_w, half_h = 0.17 * a, 0.11 * a * features["eye_open"]
    pupil_r = min(0.07 * a, half_h * 0.95)
    for ex, ey in _eye_centres(geometry):
        draw.ellipse((ex - half_w, ey - half_h, ex + half_w, ey + half_h), fill=(245, 245, 240, 255),
                     outline=line, width=line_width)
        px = ex + look["gaze_side"] * 0.05 * a
        py = ey + float(np.clip(features["gaze_down"] * 0.05 * a, 0, max(half_h - pupil_r, 0)))
        draw.ellipse((px - pupil_r, py - pupil_r, px + pupil_r, py + pupil_r), fill=(20, 15, 15, 255))
        if features["eye_open"] < 0.85:  # heavy upper lid on narrowed eyes
            draw.arc((ex - half_w, ey - half_h, ex + half_w, ey + half_h), 190, 350, fill=line,
                     width=line_width * 2)


def _draw_brows(draw, geometry, look, features):
    """Draw the eyebrows: height, tilt and pinch follow the features."""
    cx, cy, a, b = geometry
    colour = _shade(look["hair_colour"], 0.8) if look["hair_style"] != "none" else _shade(look["skin"], 0.35)
    width = max(2, int(0.09 * a * look["line_scale"]))
    eye_top = 0.1 * a * max(features["eye_open"], 1.0)
    for side, (ex, ey) in zip((-1, 1), _eye_centres(geometry)):
        brow_y = ey - eye_top - 0.14 * a - features["brow_raise"] * 0.16 * a
        inner_x = ex - side * (0.19 * a + features["brow_pinch"] * 0.05 * a)
        inner_x = cx - side * max(abs(cx - inner_x), 0.06 * a)
        outer_x = ex + side * 0.2 * a
        tilt = features["brow_tilt"] * 0.14 * a
        inner = (inner_x, brow_y + tilt)
        outer = (outer_x, brow_y - tilt)
        middle = ((inner[0] + outer[0]) / 2, (inner[1] + outer[1]) / 2 - 0.03 * a)
        draw.line([inner, middle, outer], fill=colour, width=width, joint="curve")


def _draw_nose(draw, geometry, look, features):
    """Draw the nose and, for disgust, wrinkle lines across the bridge."""
    cx, cy, a, b = geometry
    line = _shade(look["skin"], 0.55)
    width = max(1, int(0.03 * a * look["line_scale"]))
    tip_y = cy + 0.24 * b
    draw.arc((cx - 0.12 * a, tip_y - 0.1 * a, cx + 0.12 * a, tip_y + 0.06 * a), 20, 160, fill=line, width=width)
    for side in (-1, 1):
        nx = cx + side * 0.07 * a
        draw.ellipse((nx - 0.025 * a, tip_y - 0.01 * a, nx + 0.025 * a, tip_y + 0.03 * a), fill=_shade(look["skin"], 0.45))
    wrinkle = features["nose_wrinkle"]
    if wrinkle > 0.15:
        colour = _blend(look["skin"], _shade(look["skin"], 0.4), wrinkle)
        bridge_y = _eye_centres(geometry)[0][1] + 0.06 * a
        for k in range(1 + int(wrinkle * 2.5)):
            y = bridge_y + k * 0.07 * a
            draw.arc((cx - 0.1 * a, y, cx + 0.1 * a, y + 0.08 * a), 200, 340, fill=colour, width=width)


def _mouth_outline(geometry, features, points=21):
    """Return (xs, upper_ys, lower_ys) of the lips: curve, skew, wave and opening."""
    cx, cy, a, b = geometry
    half_width = 0.36 * a * features["mouth_width"]
    t = np.linspace(-1.0, 1.0, points)
    centre_y = cy + 0.55 * b
    base = centre_y - features["mouth_curve"] * 0.22 * a * (t ** 2 - 0.3)
    base -= features["mouth_skew"] * 0.18 * a * np.clip(features["skew_side"] * t, 0, 1) ** 1.5
    base += features["mouth_wave"] * 0.05 * a * np.sin(1.5 * np.pi * t)
    bulge = np.sqrt(np.clip(1 - t ** 2, 0, 1))
    upper = base - features["mouth_open"] * 0.12 * a * bulge
    lower = base + features["mouth_open"] * 0.3 * a * bulge
    return cx + half_width * t, upper, lower


def _draw_mouth(draw, geometry, look, features):
    """Draw the mouth: a lip line when closed, a filled opening (maybe teeth) when open."""
    cx, cy, a, b = geometry
    lip = _blend(look["skin"], (90, 20, 25), 0.75)
    width = max(2, int(0.06 * a * look["line_scale"]))
    xs, upper, lower = _mouth_outline(geometry, features)
    upper_line = list(zip(xs, upper))
    if features["mouth_open"] < 0.1:
        draw.line(upper_line, fill=lip, width=width, joint="curve")
        return
    lower_line = list(zip(xs, lower))
    draw.polygon(upper_line + lower_line[::-1], fill=(40, 10, 15, 255))
    if features["teeth"] > 0.5:
        teeth_bottom = upper + 0.4 * (lower - upper)
        draw.polygon(upper_line + list(zip(xs, teeth_bottom))[::-1], fill=(240, 238, 225, 255))
    draw.line(upper_line, fill=lip, width=width, joint="curve")
    draw.line(lower_line, fill=lip, width=width, joint="curve")


def _draw_cheek_lines(draw, geometry, look, features):
    """Draw smile lines beside the mouth, darker for stronger smiles."""
    strength = features["cheek_lines"]
    if strength < 0.2:
        return
    cx, cy, a, b = geometry
    colour = _blend(look["skin"], _shade(look["skin"], 0.45), strength)
    width = max(1, int(0.03 * a * look["line_scale"]))
    mouth_y = cy + 0.5 * b
    reach = 0.36 * a * features["mouth_width"] + 0.12 * a
    for side in (-1, 1):
        x = cx + side * reach
        start, end = (300, 60) if side > 0 else (120, 240)
        draw.arc((x - 0.1 * a, mouth_y - 0.2 * a, x + 0.1 * a, mouth_y + 0.15 * a), start, end,
                 fill=colour, width=width)


def _draw_glasses(draw, geometry, look):
    """Draw round glasses over the eyes."""
    cx, cy, a, b = geometry
    frame = (30, 30, 35, 255)
    width = max(1, int(0.035 * a))
    radius = 0.24 * a
    centres = _eye_centres(geometry)
    for ex, ey in centres:
        draw.ellipse((ex - radius, ey - radius * 0.8, ex + radius, ey + radius * 0.8), outline=frame, width=width)
    draw.line([(centres[0][0] + radius, centres[0][1]), (centres[1][0] - radius, centres[1][1])],
              fill=frame, width=width)


def _draw_face_layer(width, height, look, features, work_scale=2):
    """Return an RGBA image of the person on a transparent background, at output size.

    Drawing happens at `work_scale` times the output size and is then
    reduced, which antialiases the lines.
    """
    canvas = Image.new("RGBA", (width * work_scale, height * work_scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    geometry = _face_geometry(canvas.width, canvas.height, look)
    _draw_head(draw, geometry, look)
    _draw_hair(draw, geometry, look)
    _draw_eyes(draw, geometry, look, features)
    _draw_nose(draw, geometry, look, features)
    _draw_cheek_lines(draw, geometry, look, features)
    _draw_mouth(draw, geometry, look, features)
    _draw_brows(draw, geometry, look, features)
    if look["glasses"]:
        _draw_glasses(draw, geometry, look)
    # Nearest-neighbour turning at 2x is cheap; the reduce below smooths it.
    # Premultiplied alpha keeps the transparent surround from darkening the edges.
    turned = canvas.convert("RGBa").rotate(look["angle"], resample=Image.Resampling.NEAREST,
                                          center=geometry[:2])
    return turned.reduce(work_scale).convert("RGBA")


def _apply_camera_effects(image, rng):
    """Return `image` with uneven lighting, contrast change, blur and sensor noise."""
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.1)))
    pixels = np.asarray(image, np.float32)
    height, width = pixels.shape[:2]
    lighting = 1.0 + rng.uniform(0.0, 0.6) * _linear_ramp(width, height, rng.uniform(0, 2 * np.pi))
    contrast = rng.uniform(0.65, 1.1)
    brightness = rng.uniform(-25, 25)
    pixels = (pixels - 128.0) * contrast + 128.0 + brightness
    pixels = pixels * lighting[..., None]
    grain = rng.standard_normal((height, width, 1), dtype=np.float32)
    pixels += rng.uniform(0, 7) * grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def draw_face(expression, rng, *, size=None, mode=None, intensity=None):
    """Return one face of class index `expression` (0..7) as a PIL image.

    Size is random (48..256 px per side, not always square) and the mode is
    "L" for about a quarter of the faces, "RGB" otherwise, unless `size`
    ((width, height)) or `mode` are given.  `intensity` (0..1) fixes how
    strong the expression is; by default it is random, from subtle to strong.
    """
    width, height = size if size is not None else _random_image_size(rng)
    if mode is None:
        mode = "L" if rng.random() < 0.25 else "RGB"
    look = _random_look(rng)
    features = expression_features(expression, rng, intensity)
    background = _draw_background(width, height, rng).convert("RGBA")
    person = _draw_face_layer(width, height, look, features)
    image = Image.alpha_composite(background, person).convert("RGB")
    return _apply_camera_effects(image, rng).convert(mode)
