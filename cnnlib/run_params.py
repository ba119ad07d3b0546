"""From a training run's parameters to the values the library's calls take.

Offers, in the order cnn_run.py calls them:
  RUNS_ON                          the parameters a resumed run may change: where it runs
  resume_params(params)            -> (saved params, run folder) of --resume
  compile_options(params, steps_per_epoch) -> the optimizer, schedule and loss of a run,
                                     as cnn_model.compile_model takes them
  model_info(params)               -> what a saved model carries inside its file
"""

from cnnlib import config, resume

RUNS_ON = ("device", "distribute", "cpu_devices")  # may change when a run is resumed


def resume_params(params):
    """Return (params, run_dir) of the run --resume names: it goes on as it started,
    on the devices and with the runs folder given now."""
    here = {name: params[name] for name in ("runs_dir", *RUNS_ON) if name in params}
    return resume.resumed_params(params["resume"], params, here, config.check_values)


def compile_options(params, steps_per_epoch):
    """The optimizer, schedule and loss of `params`, as cnn_model.compile_model takes them."""
    cosine = params["lr_schedule"] == "cosine"
    warmup = params["warmup_epochs"] * steps_per_epoch if cosine else 0
    return dict(optimizer=params["optimizer"], weight_decay=params["weight_decay"],
                label_smoothing=params["label_smoothing"], warmup_steps=warmup,
                decay_steps=max(1, params["epochs"] * steps_per_epoch - warmup)
                if cosine else 0)


def model_info(params):
    """What a saved model carries inside its file: its classes and input."""
    return {"classes": params["classes"], "aliases": params["aliases"],
            "image_size": params["image_size"], "channels": params["channels"],
            "crop_faces": params["crop_faces"], "face_margin": params["face_margin"],
            "detector": params["detector"], "align": params["align"],
            "layers": params["layers"]}
