"""Going on with an interrupted run: its saved parameters and files, checked first.

Offers:
  resumed_params(resume, params, here, check_values) -> (saved params, run folder),
                                      each value, state and model's info checked

Everything a resume reads back (params.json, each state.json, the info stored in
each model) is checked like the command line before any data loads, and a file
changed by hand is one sentence naming the file and the key (issue: nothing
unfinished is ever called finished).
"""

from cnnlib import config, layer_table, runs, stored_info
from cnnlib.errors import ModelError, RunError, UserError

# The parameters that make a run what it is: a params.json without one cannot be resumed.
_DEFINING = ("data_dir", "epochs", "layers", "classes", "image_size", "channels")


def resumed_params(resume, params, here, check_values):
    """(params, run_dir) of the run `resume` names: its saved params.json over `params`,
    then `here` (what may differ: where runs live, the devices), checked with
    `check_values`. Raises RunError for a run that cannot go on."""
    run_dir = runs.find_run(resume, params["runs_dir"])
    runs.hold_run(run_dir)  # before anything is read: one process trains in a run at a time
    saved = runs.read_json(run_dir / "params.json", "run's parameters")
    if not isinstance(saved, dict):
        raise RunError(f"{run_dir / 'params.json'} is not the parameters of a run: it "
                       f"cannot be resumed. Start a new run.")
    missing = [key for key in _DEFINING if key not in saved]
    if missing:  # never filled in with today's defaults: the run would be another one
        raise RunError(f"{run_dir / 'params.json'} has no {missing[0]}, which every run "
                       f"saves: the file was changed by hand, so it cannot be resumed. "
                       f"Start a new run.")
    try:  # checked like --name=value: known names, types, finite numbers, ranges
        saved = config.check_saved(saved, params, run_dir / "params.json",
                                   extra=("config_file", "config_values"))
        params = {**params, **saved, "resume": str(run_dir), **here}
        check_values(params)
        layer_table.check_layer_table(params["layers"])  # before any data, naming the file
    except ModelError as error:
        raise RunError(f"{run_dir / 'params.json'}, key layers: {str(error).rstrip('.')}; the "
                       f"run cannot be resumed.") from None
    except UserError as error:
        raise RunError(f"{str(error).rstrip('.')}; the run cannot be resumed.") from None
    _check_run_files(run_dir, params)
    print(f"Resuming {run_dir} from its last finished epoch, with the parameters saved "
          f"in its params.json.")
    return params, run_dir


def _check_run_files(run_dir, params):
    """Raise a UserError, before any data is loaded, for a state.json or a model's stored
    info (cnnlib.stored_info) in `run_dir` that does not fit its `params`."""
    for folder in (run_dir, run_dir / "no_dropout", run_dir / "dropout"):
        state = runs.read_state(folder)
        if state is not None and not state["finished"] and (folder / "metrics.json").is_file():
            raise RunError(f"{folder} cannot be trusted: its metrics.json records a trained "
                           f"model but {runs.STATE_FILE} says {state['epochs_done']} of "
                           f"{state['epochs']} epochs are done. Start a new run.")
        if state is not None and state["epochs"] != params["epochs"]:
            raise RunError(f"{folder / runs.STATE_FILE}: epochs = {state['epochs']} does not match "
                           f"the epochs ({params['epochs']}) of {run_dir / 'params.json'}; "
                           f"the files were changed by hand, so start a new run.")
        for model in sorted(m for m in folder.glob("*.keras") if not m.name.startswith(".")):
            stored_info.check_matches(
                stored_info.read_info(model), f"{stored_info.INFO_FILE} inside {model}",
                **{key: params[key] for key in ("image_size", "channels", "classes")})
