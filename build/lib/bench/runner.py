"""`bench run`: every sweep point x seed of a study becomes one Optuna trial, run to completion or resumed.

Layout under `results/<study>/`:
    runs/<stage>-<hash>/     one training run (config.json, checkpoints/, history.json, samples/, done.json);
                             shared by every trial whose stage chain contains it (content-hashed)
    trials/<trial key>/      trial.json (written last, atomically: the trial's "done" marker)
    records.csv, trials.csv  rebuilt from the finished trials after each trial
Exactly-once: a worker claims a trial without waiting and a stage run waiting (bench/claims.py: a flock on
trials/<key>/.lock and runs/.<key>.lock on one machine; a PostgreSQL advisory lock when the storage is
PostgreSQL, for workers on several machines sharing the results folder), so no point runs twice. A killed
worker's claims die with it; the next worker to take the trial resumes it from its newest checkpoint.
Order: the costliest chain of runs first, then the longest trials (critical_path_order), and a worker never
waits on a run another worker trains while another trial is ready (_one_pass).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from model.atomicio import remove_stale_temporaries, write_json
from model.device import resolve_device
from model.errors import BenchError, ConfigError
from model.evaluate import Evaluator
from model.faults import fault
from model.schedule import schedule_from_config
from model.trainer import Budget, train

from . import records, search_space
from .claims import FileClaims, claims_for, server_lock
from .cost import run_cost, size_key
from .launch import train_processes
from .locks import file_lock
from .preflight import check_same_configuration
from .presets import EPOCH_MULTIPLIER, SCALES
from .report import gate
from .study import SCRATCH, StageRun, Study, Trial

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class RunSummary:
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    paused: bool = False


def make_storage(url: str):
    """An Optuna storage from `--storage`: an RDB URL (sqlite:///PATH, postgresql://...) or a journal file
    (`journal:PATH`, or a path ending in .log / .journal), which suits NFS and many workers without a server.

    SQLite waits up to 60 s for a lock (Optuna's default 5 s fails with "database is locked" when several
    workers write at once).
    """
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:")).expanduser()
        if not path.name or path.is_dir():
            raise ConfigError(f"--storage {url!r}: a journal storage is a file, not a folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except (OSError, ValueError) as e:
            raise ConfigError(f"--storage {url!r}: cannot open the journal file ({e})") from None
    if "://" not in url:
        raise ConfigError(f"--storage {url!r}: expected a database URL (sqlite:///PATH, postgresql://...) "
                          f"or a journal file (journal:PATH, PATH.log)")
    import sqlalchemy.exc

    if url.startswith("postgresql"):
        try:  # one worker creates Optuna's tables at a time (as the file lock below does for SQLite)
            with server_lock(url, "create-tables"):
                return optuna.storages.RDBStorage(url)
        except ImportError as e:
            raise ConfigError(f"--storage {url!r}: no PostgreSQL driver ({e}): "
                              f"pip install 'palette-bench[postgres]'") from None
        except (ValueError, sqlalchemy.exc.SQLAlchemyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--storage {url!r}: cannot open ({type(e).__name__}: {first[:200]})") from None
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        db = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if db in ("", ":memory:"):
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        Path(db).parent.mkdir(parents=True, exist_ok=True)
        # Creating the tables is not safe against a second worker doing it at the same moment
        # ("table ... already exists"): one worker at a time, then SQLite's own locking.
        with file_lock(Path(f"{db}.lock")):
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except (ImportError, ValueError, OSError, sqlalchemy.exc.SQLAlchemyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--storage {url!r}: cannot open ({type(e).__name__}: {first[:200]})") from None


def open_study(study: Study, storage, stage: str) -> optuna.Study:
    """Create or load the Optuna study of one stage, `<study>/<stage>` (why per stage: bench/search_space.py),
    in `storage` (a URL or journal path, see make_storage, or a storage object)."""
    if isinstance(storage, str):
        storage = make_storage(storage)
    trials = search_space.trials_by_stage(study)[stage]
    space = search_space.search_space(trials, study.follows)
    # The grid is declared to Optuna; trials are claimed through file locks, because GridSampler may hand
    # the same point to two workers running at once.
    sampler = optuna.samplers.GridSampler(search_space.grid(space, trials), seed=0)
    name = _name_fitting(storage, search_space.optuna_study_name(study.name, stage), space)
    ostudy = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                 sampler=sampler)
    ostudy.set_user_attr("study", study.name)
    ostudy.set_user_attr("stage", stage)
    ostudy.set_user_attr("study_file", str(study.path))
    ostudy.set_user_attr("scale", study.scale)
    ostudy.set_user_attr("axes", study.axes)
    ostudy.set_user_attr("n_trials", len(trials))
    ostudy.set_user_attr("quality_metric", study.spec.quality_metric)
    with warnings.catch_warnings():  # experimental since optuna 3.2, stable in use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ostudy.set_metric_names([search_space.metric_name(study.spec.quality_metric)])  # not "Objective 0"
    return ostudy


def _name_fitting(storage, name: str, space: dict) -> str:
    """`name`, or `name~2`, `name~3`, ...: the first Optuna study whose recorded trials' parameters fit `space`,
    or that does not exist yet. Optuna fixes an axis's categorical choices for the life of a study (it refuses a
    trial whose axis has another list of values: "CategoricalDistribution does not support dynamic value
    space"), so a study file that adds a value to such an axis (a new arm of ablations/cost.yaml) continues in a
    new Optuna study; its finished trials are added to it from their files (_settle) and the old one stays as it
    was, history in the dashboard."""
    existing = {s.study_name for s in storage.get_all_studies()}
    candidate, k = name, 1
    while candidate in existing and not all(
            _fits(t.distributions, space)
            for t in storage.get_all_trials(storage.get_study_id_from_name(candidate), deepcopy=False)):
        k += 1
        candidate = f"{name}~{k}"
    return candidate


def _fits(recorded: dict, space: dict) -> bool:
    """Whether a recorded trial's parameter distributions can share an Optuna study with `space`'s."""
    try:
        for axis, dist in space.items():
            if axis in recorded:
                optuna.distributions.check_distribution_compatibility(recorded[axis], dist)
    except ValueError:
        return False
    return True


def _template(study: Study, trial: Trial, state: TrialState, **fields) -> optuna.trial.FrozenTrial:
    """A trial of the stage's Optuna study with the trial's point as parameters, one per axis."""
    space = search_space.search_space(search_space.trials_by_stage(study)[trial.run.stage], study.follows)
    params = search_space.params(trial, space)
    user_attrs = {"key": trial.key, "label": trial.label, "stage": trial.run.stage,
                  "transfer_source": trial.run.transfer_source, **fields.pop("user_attrs", {})}
    # its parameters are given (as enqueue_trial does): GridSampler must not assign it another grid point
    # (nor warn "re-evaluating a configuration" when a resumed trial replaces an interrupted one)
    return optuna.trial.create_trial(state=state, params=params, distributions=space, user_attrs=user_attrs,
                                     system_attrs={"fixed_params": params}, **fields)


def _new_optuna_trial(ostudy: optuna.Study, study: Study, trial: Trial) -> optuna.Trial:
    for old in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if old.user_attrs.get("key") == trial.key:  # its worker died (we hold the trial's lock now)
            _interrupted(ostudy, old._trial_id)
    template = _template(study, trial, TrialState.RUNNING)
    return optuna.Trial(ostudy, ostudy._storage.create_new_trial(ostudy._study_id, template_trial=template))


def _interrupted(ostudy: optuna.Study, trial_id: int, why: str = "") -> None:
    """Mark an Optuna trial whose worker died or stopped as FAIL, fail_reason 'interrupted' (resumed by a new one)."""
    ostudy._storage.set_trial_user_attr(trial_id, "fail_reason", "interrupted" + (f" ({why})" if why else ""))
    ostudy._storage.set_trial_state_values(trial_id, TrialState.FAIL)


def _settle(ostudy: optuna.Study, study: Study, trial: Trial, study_dir: Path) -> None:
    """A finished trial (trial.json written) whose worker died before telling Optuna: tell it now. A finished
    trial this Optuna study has never seen (results from before per-stage studies, or another --storage) is
    added from its files, so the dashboard shows the whole grid.

    Called with the trial's lock held, so no live worker owns its RUNNING Optuna trials."""
    info = records.read_json(study_dir / "trials" / trial.key / "trial.json")
    mine = [t for t in ostudy.get_trials(deepcopy=False) if t.user_attrs.get("key") == trial.key]
    told = any(t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and not
                                                  t.user_attrs.get("fail_reason", "").startswith("interrupted"))
               for t in mine)
    for old in mine:
        if old.state != TrialState.RUNNING:
            continue
        if old.number != info.get("optuna_trial") or info.get("optuna_study", ostudy.study_name) != ostudy.study_name:
            _interrupted(ostudy, old._trial_id)
        elif info["state"] == "complete":
            value = float(_final_metrics(study_dir, trial.run).get(study.spec.quality_metric, float("nan")))
            ostudy._storage.set_trial_state_values(old._trial_id, TrialState.COMPLETE,
                                                   None if value != value else [value])
            told = True
        else:
            ostudy._storage.set_trial_user_attr(old._trial_id, "fail_reason", info.get("reason", ""))
            ostudy._storage.set_trial_state_values(old._trial_id, TrialState.FAIL)
            told = True
    if not told:
        _backfill(ostudy, study, trial, study_dir, info)


def _backfill(ostudy: optuna.Study, study: Study, trial: Trial, study_dir: Path, info: dict) -> None:
    """Add a finished trial to the stage's Optuna study from its trial.json and history.json."""
    if info["state"] != "complete":
        template = _template(study, trial, TrialState.RUNNING, user_attrs={"fail_reason": info.get("reason", "")})
        trial_id = ostudy._storage.create_new_trial(ostudy._study_id, template_trial=template)
        ostudy._storage.set_trial_state_values(trial_id, TrialState.FAIL)
        return
    history = records.read_json(study_dir / "runs" / trial.run.key / "history.json")
    final = _final_metrics(study_dir, trial.run)
    quality = study.spec.quality_metric
    steps = {r["epoch"]: float(r["metrics"][quality]) for r in history if quality in r.get("metrics", {})}
    template = _template(study, trial, TrialState.RUNNING, intermediate_values=steps,
                         user_attrs=_attr_values(history, final, info.get("num_parameters") or 0))
    otrial = optuna.Trial(ostudy, ostudy._storage.create_new_trial(ostudy._study_id, template_trial=template))
    _finish(ostudy, otrial, TrialState.COMPLETE, float(final.get(quality, float("nan"))))


def _final_metrics(study_dir: Path, run: StageRun) -> dict:
    history = records.read_json(study_dir / "runs" / run.key / "history.json")
    return next((r["metrics"] for r in reversed(history) if r.get("metrics")), {})


def run_stage(run: StageRun, runs_dir: Path, device: str, budget: Budget, quality: str,
              report: Callable[[float, int], None] | None, on_step: Callable[[dict], None] | None,
              claims=None) -> dict:
    """Train one stage run (or find it done), after its upstream runs; returns its done.json."""
    run_dir = runs_dir / run.key
    done_file = run_dir / "done.json"
    with (claims or FileClaims()).run(runs_dir, run.key):
        if done_file.exists():
            return records.read_json(done_file)
        init_from = None
        if run.upstream is not None:
            init_from = Path(records.read_json(runs_dir / run.upstream.key / "done.json")["checkpoint"])
        elif run.transfer_source.endswith(".pt"):
            init_from = Path(run.transfer_source)
        evaluator = Evaluator(run.config, device=device, out_dir=run_dir / "samples")

        def on_epoch_end(record: dict, history: list[dict]) -> None:
            if report is not None and quality in record.get("metrics", {}):
                report(record["metrics"][quality], record["epoch"])  # optuna: (value, step)

        if run.config.train.processes > 1:  # K ranks as child processes (bench/launch.py); rank 0 evaluates
            result = train_processes(run.config, run_dir, device, init_from, budget, evaluate=True)
            for record in result.history if result.status == "done" else []:
                on_epoch_end(record, result.history)  # Optuna hears the epochs' values once the run is done
        else:
            result = train(run.config, run_dir, device=device, init_from=init_from, budget=budget,
                           evaluate_fn=evaluator, on_step=on_step, on_epoch_end=on_epoch_end)
        if result.status != "done":
            return {"status": result.status}
        done = {"status": "done", "checkpoint": str(result.checkpoint), "num_parameters": result.num_parameters,
                "stage": run.stage, "transfer_source": run.transfer_source}
        write_json(done_file, done)
        return done


def run_trial(study: Study, ostudy: optuna.Study, trial: Trial, study_dir: Path, device: str,
              budget: Budget, on_step=None, claims=None) -> str:
    """Run one claimed trial; returns 'complete', 'failed' or 'paused'."""
    trial_dir = study_dir / "trials" / trial.key
    trial_dir.mkdir(parents=True, exist_ok=True)  # a database claim (bench/claims.py) creates no lock file here
    otrial = _new_optuna_trial(ostudy, study, trial)
    # this session's share of the trial (a resumed trial: its last session), evaluation and baselines included
    wall0, cpu0 = time.perf_counter(), time.process_time()
    quality = study.spec.quality_metric
    write_json(trial_dir / "config.json", {r.stage: r.config.model_dump(mode="json") for r in trial.run.chain()})
    info = {"key": trial.key, "index": study.trials.index(trial), "label": trial.label, "seed": trial.seed,
            "point": trial.point,
            "stage": trial.run.stage, "transfer_source": trial.run.transfer_source,
            "is_baseline": trial.is_baseline, "optuna_trial": otrial.number,
            "optuna_study": ostudy.study_name,
            "chain": [{"key": r.key, "stage": r.stage, "transfer_source": r.transfer_source}
                      for r in trial.run.chain()], **_schedule_facts(trial.run), **_device_facts(device),
            **_load_facts("start", study, study_dir, claims)}
    try:
        done = {}
        for run in trial.run.chain():
            is_target = run is trial.run
            done = run_stage(run, study_dir / "runs", device, budget, quality,
                             otrial.report if is_target else None, on_step, claims)
            if done["status"] != "done":
                otrial.set_user_attr("status", "paused (session budget)")
                return "paused"  # left RUNNING; the next `bench run` resumes it from its checkpoint
        history = records.read_json(study_dir / "runs" / trial.run.key / "history.json")
        final = _final_metrics(study_dir, trial.run)
        info.update(state="complete", num_parameters=done["num_parameters"])
        _attrs(otrial, history, final, done["num_parameters"])
        trivial = gate.run_trivial(study_dir / "runs" / trial.run.key, device)  # before trial.json: a copy keeps it
        for k, v in gate.gate(trivial, final, quality).items():  # learned: beats the best trivial baseline
            otrial.set_user_attr(k, v)
        info.update(trial_seconds=time.perf_counter() - wall0, trial_cpu_seconds=time.process_time() - cpu0,
                    **_load_facts("end", study, study_dir, claims))
        write_json(trial_dir / "trial.json", info)  # the trial's done marker, written last
        fault("trial-finish")
        _finish(ostudy, otrial, TrialState.COMPLETE, float(final.get(quality, float("nan"))))
        return "complete"
    except (BenchError, torch.OutOfMemoryError, FloatingPointError, ValueError, RuntimeError) as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
        info.update(state="failed", reason=reason, num_parameters=None)
        (trial_dir / "traceback.txt").write_text(traceback.format_exc())
        write_json(trial_dir / "trial.json", info)
        fault("trial-finish")
        otrial.set_user_attr("fail_reason", reason)
        _finish(ostudy, otrial, TrialState.FAIL)
        return "failed"
    except OSError as e:  # a full disk, a lost mount: not the trial's fault; it resumes on the next run
        try:
            _interrupted(ostudy, otrial._trial_id, f"{type(e).__name__}: {e}")
        except Exception:  # the storage may sit on the failing disk; the next run settles it
            pass
        raise


def _device_facts(device: str) -> dict:
    """Where the trial ran (for the report's header): torch device, its name, torch version."""
    dev = resolve_device(device)
    cpu = platform.processor() or platform.machine()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu
    return {"device": str(dev), "device_name": name, "torch_version": torch.__version__}


def _load_facts(when: str, study: Study, study_dir: Path, claims) -> dict:
    """The machine's load at a trial's start or end: `load_<when>`, the 1-minute load average (os.getloadavg;
    None where the OS has none), and `workers_<when>`, the trials of this study that live workers hold (this
    one included): what a time measured on a shared machine competed with."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = None
    held = (claims or FileClaims()).held
    return {f"load_{when}": load, f"workers_{when}": sum(held(study_dir / "trials" / t.key) for t in study.trials)}


def _schedule_facts(run: StageRun) -> dict:
    """T and the terminal distortion of the trained stage's schedule (alpha_bar_T and SNR_T)."""
    schedule = schedule_from_config(run.config.diffusion)
    return {"timesteps": schedule.timesteps, "terminal_alpha_bar": schedule.terminal_alpha_bar,
            "terminal_snr": schedule.terminal_snr}


def _finish(ostudy: optuna.Study, otrial: optuna.Trial, state: TrialState, value: float | None = None) -> None:
    # Straight to the storage: `Study.tell` would let GridSampler call `Study.stop()` when the grid is
    # exhausted, which Optuna only allows inside `optimize`.
    values = None if value is None or value != value else [value]  # NaN: the metric was not computed
    if state == TrialState.COMPLETE and values is None:
        otrial.set_user_attr("note", "quality metric not computed")
    ostudy._storage.set_trial_state_values(otrial._trial_id, state, values)


def _attr_values(history: list[dict], final: dict, num_parameters: int) -> dict:
    secs = [r["epoch_seconds"] for r in history]
    return {"time_per_epoch_min": sum(secs) / len(secs) / 60, "total_hours": history[-1]["train_seconds"] / 3600,
            "images_seen": history[-1]["images_seen"], "num_parameters": num_parameters,
            "epochs": history[-1]["epoch"], **{f"final:{k}": v for k, v in final.items()}}


def _attrs(otrial: optuna.Trial, history: list[dict], final: dict, num_parameters: int) -> None:
    for k, v in _attr_values(history, final, num_parameters).items():
        otrial.set_user_attr(k, v)


def _recorded_runs(study_dir: Path) -> dict:
    """study.json's trial -> training_id map ({} when there is none yet, or the file is unreadable)."""
    try:
        return dict(json.loads((study_dir / "study.json").read_text()).get("runs") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def run_study(study: Study, results_root: Path, storage: str, device: str = "auto", max_trials: int | None = None,
              budget: Budget | None = None, retry_failed: bool = False, progress=None,
              wait: float | None = None, train: bool = True, sizes: dict | None = None) -> RunSummary:
    """Run every trial of `study` this worker can claim. `wait` (seconds; `bench worker`): instead of ending
    after one pass while other workers hold trials, pass again every `wait` seconds until every trial is
    finished, so a trial whose worker died (its claim released) is taken and resumed here.
    `train=False` (`bench run --no-train`): train nothing, only settle the finished trials and write study.json
    and the records (publishing a folder whose trials ran elsewhere).
    `sizes` (the preflight's data sizes): weigh the trial order by each run's cost (critical_path_order)."""
    study_dir = Path(results_root) / study.name
    (study_dir / "trials").mkdir(parents=True, exist_ok=True)
    storage = make_storage(storage) if isinstance(storage, str) else storage
    with claims_for(storage) as claims:
        with claims.records(study_dir):  # the study folder's shared files: one writer at a time, on any host
            runs = _recorded_runs(study_dir)  # kept for the trials of other --seeds calls
            runs.update({t.key: t.run.training_id for t in study.trials})
            write_json(study_dir / "study.json", {
                "name": study.name, "file": str(study.path), "scale": study.scale, "axes": study.axes,
                "baseline": study.spec.baseline, "quality_metric": study.spec.quality_metric,
                "description": study.spec.description, "trials": len(study.trials), "overrides": study.overrides,
                "seeds": study.spec.seeds, "seeds_override": study.seeds_override,
                # the points this file asks for; finished trials of other points are stale (records.stale_keys)
                "points": list(dict.fromkeys(records.point_id(t.point) for t in study.trials)),
                # what each trial trained (bench claims counts a run two studies share once)
                "runs": runs,
                # the scale preset and epoch multiplier the runs were trained under (a later preset change
                # does not pool this folder's claims with a newer one's, bench/report/published.py)
                "preset": {"scale": study.scale, "keys": SCALES[study.scale],
                           "epoch_multiplier": EPOCH_MULTIPLIER[study.scale]},
                "follows": study.follows, "names": study.names,
                "claims": [c.model_dump(mode="json") for c in study.spec.claims]})
            ostudies = {stage: open_study(study, storage, stage) for stage in search_space.trials_by_stage(study)}
        summary = RunSummary()
        budget = budget or Budget()
        started = time.perf_counter()
        counted = None if wait is None else set()  # trials the progress bar has counted (bench worker passes again)
        while True:
            others = _one_pass(study, study_dir, ostudies, claims, summary, device, max_trials, budget, started,
                               retry_failed, progress, counted, train, sizes)
            retry_failed = False  # a trial that fails again stays failed
            if wait is None or not others or summary.paused or (max_trials is not None and summary.ran >= max_trials):
                break
            time.sleep(wait)
        # also after a kill between a trial's end and its records
        records.rebuild(study_dir, lock=claims.records(study_dir))
    return summary


def critical_path_order(trials: list[Trial], sizes: dict | None = None) -> list[Trial]:
    """The order in which a worker takes the trials: list scheduling, highest level first. With several
    workers the study's wall time is at least its longest chain of dependent runs (a run starts from its
    upstream run's checkpoint, so the chain trains one run after another), so the trial whose run starts the
    costliest chain goes first; the workers fill the rest of their time with the independent trials, longest
    first, so that the short ones even out the workers' ends.

    A run's level: its own cost plus the highest level among the runs that start from it (in the chains of the
    other trials, matched by run key). Its cost: bench/cost.py:run_cost on the training images of its data
    (`sizes`: the preflight's {"source:path@size": (train, test)}). Without sizes, or without the size of one
    of the runs' data, every run costs 1: the level counts the runs of the chain. Sort key: the level of the
    trial's run, then its own cost, both highest first, then grid order; a study without transfers runs
    longest first (without sizes: in grid order). A run already done counts as well (the order is computed
    once, before the pass).

    paper.yaml (cpu scale; 78 training faces, 591 landscape crops; in thousands of forward passes): the
    transfer chain: the N = 4, E = 160 inpainting base (level 78.2), face colorization transfer (53.3), landscape
    colorization transfer (25.7), then the independent trials, longest first: face inpainting N = 1 and face
    colorization from scratch (24.9 each, grid order), landscape colorization from scratch (23.7), and the short
    N = 4, E = 40 inpainting (8.0) last. In grid order, with two workers, the transfer chain started late: one
    worker sat idle for the last 280 s of the study's 1284 s; with the chain first but the independent trials
    in grid order, the short one ran early and one worker sat idle for the last 93 s."""
    runs: dict[str, StageRun] = {}
    downstream: dict[str, set[str]] = {}  # run key -> the keys of the runs that start from it
    for trial in trials:
        chain = trial.run.chain()
        runs.update((run.key, run) for run in chain)
        for up, down in itertools.pairwise(chain):
            downstream.setdefault(up.key, set()).add(down.key)
    if sizes is not None and all(size_key(run.config.data) in sizes for run in runs.values()):
        cost = {key: run_cost(run.config, sizes[size_key(run.config.data)][0]) for key, run in runs.items()}
    else:
        cost = dict.fromkeys(runs, 1.0)
    levels: dict[str, float] = {}  # run key -> the cost of the costliest chain of runs from it to its end

    def level(key: str) -> float:  # chains end (bench/study.py refuses a transfer_source loop)
        if key not in levels:
            levels[key] = cost[key] + max((level(d) for d in downstream.get(key, ())), default=0.0)
        return levels[key]

    # sorted is stable: ties keep grid order
    return sorted(trials, key=lambda t: (-level(t.run.key), -cost[t.run.key]))


def _waits_on_another_worker(trial: Trial, runs_dir: Path, claims) -> bool:
    """True when a run of the trial's chain is not done and another worker trains it right now: taking the
    trial would block on that run's lock (bench/claims.py). Its own run counts too: another trial's chain may
    train it as an upstream."""
    return any(not (runs_dir / run.key / "done.json").exists() and claims.run_held(runs_dir, run.key)
               for run in trial.run.chain())


def _one_pass(study: Study, study_dir: Path, ostudies: dict, claims, summary: RunSummary, device: str,
              max_trials: int | None, budget: Budget, started: float, retry_failed: bool, progress,
              counted: set | None, train: bool = True, sizes: dict | None = None) -> bool:
    """One pass over the grid, running each trial this worker can claim; True if other workers held some.
    `counted`: None (one pass only), else the keys already counted by the progress bar, added to here.

    Each trial is visited once, critical path first (critical_path_order, its runs weighed by their cost on the
    data `sizes`). The next trial is chosen after each one ends: the first one that can start now; a trial
    whose chain waits on a run another worker trains is deferred while another is ready, and taken (waiting
    for that run, then running or finding it done) only when every remaining trial waits."""
    summary.skipped, others = 0, False
    runs_dir = study_dir / "runs"
    remaining = critical_path_order(study.trials, sizes)
    while remaining:
        if max_trials is not None and summary.ran >= max_trials:
            break
        if budget.minutes is not None and (time.perf_counter() - started) / 60 >= budget.minutes:
            summary.paused = True
            break
        ready = (i for i, t in enumerate(remaining) if not _waits_on_another_worker(t, runs_dir, claims))
        trial = remaining.pop(next(ready, 0))
        trial_dir = study_dir / "trials" / trial.key
        with claims.trial(trial_dir) as claimed:
            finished = claimed and _finished(trial_dir, retry_failed)
            if finished:
                _settle(ostudies[trial.run.stage], study, trial, study_dir)
            others |= not claimed
            if not claimed or finished or not train:
                summary.skipped += 1
                if progress and (counted is None or (finished and trial.key not in counted)):
                    progress.trial_skipped(trial)
                    if counted is not None:
                        counted.add(trial.key)
                continue
            if progress:
                progress.trial_started(trial)
                if counted is not None:
                    counted.add(trial.key)
            remove_stale_temporaries(trial_dir)
            state = run_trial(study, ostudies[trial.run.stage], trial, study_dir, device, budget,
                              on_step=progress.step if progress else None, claims=claims)
            records.rebuild(study_dir, lock=claims.records(study_dir))
            if progress:
                progress.trial_finished(trial, state)
        summary.ran += state != "paused"
        summary.failed += state == "failed"
        if state == "paused":
            summary.paused = True
            break
    return others


def _finished(trial_dir: Path, retry_failed: bool) -> bool:
    f = trial_dir / "trial.json"
    if not f.exists():
        return False
    if retry_failed and json.loads(f.read_text())["state"] == "failed":
        f.unlink()
        return False
    return True


def study_status(study: Study, results_root: Path, storage=None) -> list[dict]:
    """One row per trial: finished (complete / failed), running (claimed by a live worker), interrupted or
    pending. `storage` (an Optuna storage object): where claims live when it is a server (PostgreSQL)."""
    records.published_copy(Path(results_root) / study.name)  # results/reference/*: tables only, no trial states
    check_same_configuration(study, results_root)  # finished trials of another --scale / --set are not these
    from .report.labels import study_names

    names = study_names(study)
    with claims_for(storage) if storage is not None else FileClaims() as claims:
        return [_status_row(study, results_root, t, claims, names) for t in study.trials]


def _status_row(study: Study, results_root: Path, t: Trial, claims, names: dict[str, str]) -> dict:
    trial_dir = Path(results_root) / study.name / "trials" / t.key
    state = "pending"
    if (trial_dir / "trial.json").exists():
        state = records.read_json(trial_dir / "trial.json")["state"]
    elif claims.held(trial_dir):
        state = "running"
    elif (Path(results_root) / study.name / "runs" / t.run.key / "checkpoints").exists():
        state = "interrupted"
    return {"trial": t.key, "config": names.get(t.key, t.label), "label": t.label, "seed": t.seed,
            "stage": t.run.stage, "state": state}


__all__ = ["run_study", "study_status", "open_study", "SCRATCH"]
