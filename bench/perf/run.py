"""`bench perf`: how fast the core runs here, against a peer and against the machine's own limits.

Measures, in one process and one run: the fp32 matmul peak; the training step (images/s, GFLOP/s, share
of that peak) of our UNet against diffusers' UNet2DModel of the same architecture at the cpu preset and at
a larger config; an ablation of each speed switch; sampling (DDPM, DDIM); FID feature extraction against
pytorch-fid's own path; the data pipeline; the peak memory of a training epoch with N = 1 and N = 8
subsets. Writes perf.md (with the command and the machine), perf.csv and perf.json under `out_dir`.
How the timings are taken (alternated rounds, CPU time of the compute thread): bench/perf/timing.py.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from model.device import resolve_device

from . import data as perf_data
from . import evaluation as perf_eval
from . import train as perf_train
from .study import training_share
from .timing import conv_peak, machine, matmul_peak, round_ratios

SKIPPED = (f"Peer rows skipped (diffusers is not installed: the training step against UNet2DModel and where the step "
           f"goes); add them with `{perf_train.PEERS_HINT}`.")
MAX_LOAD_FOR_2_THREADS = 1.0  # 2-thread wall-clock rows only on a machine otherwise idle
TARGETS = {"speedup_vs_peer": 1.05, "share_of_peak": 0.75, "fid_speedup": 1.4, "data_vs_step": 1.0,
           "training_share": 0.75}


@dataclass(frozen=True)
class Plan:
    """How much each section measures: `quick` for a smoke check (< 3 min here), full (< 15 min)."""

    rounds: int = 15
    rounds_large: int = 7
    rounds_ablation: int = 7
    compile: bool = True
    two_threads: bool = True
    sample_batch: int = 16
    ddpm_steps: int = 100
    ddim_steps: int = 25
    rounds_sampling: int = 3
    fid_images: int = 100
    rounds_fid: int = 3
    data_tasks: tuple = tuple(perf_data.TASKS)
    memory_images: int = 256


QUICK = Plan(rounds=5, rounds_large=2, rounds_ablation=2, compile=False, two_threads=False, sample_batch=4,
             ddpm_steps=50, ddim_steps=10, rounds_sampling=1, fid_images=25, rounds_fid=2,
             data_tasks=("inpainting (paper masks)",), memory_images=64)


def _status(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _training_section(title: str, cfg, device, rounds: int, peak: float, csv: list, results: dict, key: str):
    rows = perf_train.compare_training(cfg, device, rounds)
    ours = rows["ours"]
    peers = {k: v for k, v in rows.items() if k != "ours"}
    table = []
    for name, c in rows.items():
        gflops = c.flops / c.timing.seconds / 1e9
        ratio = c.timing.seconds / ours.timing.seconds  # ours' speed-up against this row
        table.append([name, f"{c.params / 1e6:.3f} M", cfg.train.batch_size, _fmt(c.flops / 1e9),
                      _fmt(c.timing.per_second, 2), _fmt(c.timing.items / c.timing.wall_seconds, 2),
                      _fmt(gflops), f"{100 * gflops / peak:.0f}%",
                      "-" if name == "ours" else f"x{ratio:.2f}",
                      f"{100 * c.timing.spread:.0f}%"])
        csv.append({"section": key, "name": name, "params": c.params, "batch": cfg.train.batch_size,
                    "gflop_per_step": c.flops / 1e9, "images_per_s": c.timing.per_second,
                    "images_per_s_wall": c.timing.items / c.timing.wall_seconds, "gflop_per_s": gflops,
                    "share_of_peak": gflops / peak})
    share = ours.flops / ours.timing.seconds / 1e9 / peak
    results[key] = {"share_of_peak": share, "images_per_s": ours.timing.per_second}
    if peers:
        best_peer = min(peers.values(), key=lambda c: c.timing.seconds)
        per_round = round_ratios(best_peer.timing, ours.timing)  # the same rounds (alternate)
        results[key].update(speedup_vs_peer=best_peer.timing.seconds / ours.timing.seconds,
                            speedup_range=[min(per_round), max(per_round)],
                            best_peer=best_peer.label, param_gap=abs(best_peer.params - ours.params) / ours.params)
    md = [f"### {title}", "", _table(["network", "params", "batch", "GFLOP/step", "img/s", "img/s (wall)",
                                      "GFLOP/s", "of peak", "ours' speed-up", "spread"], table), ""]
    return "\n".join(md), results[key]


def run_perf(out_dir: Path, quick: bool = False, device: str = "auto", threads: int = 1) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan, dev = (QUICK if quick else Plan()), resolve_device(device)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    command = shlex.join(["bench", *sys.argv[1:]] if Path(sys.argv[0]).name in ("bench", "__main__.py")
                         else sys.argv)
    info = machine(dev)
    csv: list[dict] = []
    results: dict = {"machine": info, "command": command, "quick": quick, "targets": TARGETS}
    md = [f"# bench perf{' (quick)' if quick else ''}", "", f"Command: `{command}`", "",
          f"Machine: {info['cpu']} ({info['cpu_flags']}), {info['logical_cpus']} logical CPUs, "
          f"{info['torch_threads']} torch thread(s), torch {info['torch']}, diffusers {info['diffusers']}, "
          f"device {info['device']}. Load average at start: {info['load_average_1m']}.", "",
          f"Clock: {info['clock']}; every figure is the median over alternated rounds (bench/perf/timing.py). "
          "Ratios come from the same rounds.", ""]
    if not perf_train.peers_available():
        results["peers_skipped"] = SKIPPED
        md += [SKIPPED, ""]
    header = len(md)
    try:
        peak, conv = matmul_peak(dev), conv_peak(dev)
        results["matmul_peak_gflops"], results["conv_peak_gflops"] = peak, conv
        md += [f"fp32 matmul peak (2048^3 sgemm, same clock and threads): **{_fmt(peak)} GFLOP/s**. "
               f"A large 3x3 convolution (512 channels, oneDNN) runs at {_fmt(conv)} GFLOP/s "
               f"({100 * conv / peak:.0f}% of the sgemm): 'of peak' below is against the sgemm, as specified; "
               "the targets table also gives the share of this higher figure.", "",
               "## Training step", "", "Step = palette_loss forward + backward + grad clip + Adam + EMA "
               "(model/trainer.py), fixed batch; FLOPs counted with FlopCounterMode on one forward+backward "
               "(attention included). The peer is diffusers' UNet2DModel with the same architecture.", ""]
        cpu_cfg = perf_train.preset_config("cpu")
        large_cfg = perf_train.preset_config("cpu", **perf_train.LARGER)
        text, main = _training_section("cpu preset (32 px, base 32, mults [1, 2, 2], attention at 16 and 8)",
                                       cpu_cfg, dev, plan.rounds, peak, csv, results, "train_cpu")
        md.append(text)
        text, _ = _training_section("larger: base 64 at 32 px (the UNetConfig default width)",
                                    large_cfg, dev, plan.rounds_large, peak, csv, results, "train_large")
        md.append(text)
        if perf_train.peers_available():
            md += _floor_section(cpu_cfg, dev, plan, csv, results)
        md += _ablation_section(cpu_cfg, dev, plan, csv, results)
        load = os.getloadavg()[0]
        if plan.two_threads and dev.type == "cpu" and os.cpu_count() >= 2 and load >= MAX_LOAD_FOR_2_THREADS:
            md += [f"2-thread rows skipped: load average {load:.1f} on {os.cpu_count()} cores; with other jobs on "
                   "the cores, OpenMP threads wait on each other and wall-clock timings measure the load.", ""]
        elif plan.two_threads and dev.type == "cpu" and os.cpu_count() >= 2:
            torch.set_num_threads(2)
            try:
                peak2 = matmul_peak(dev)
                text, _ = _training_section(f"cpu preset, 2 threads (wall clock; matmul peak {_fmt(peak2)} "
                                             "GFLOP/s at 2 threads)", cpu_cfg, dev, plan.rounds_large, peak2, csv,
                                             results, "train_cpu_2threads")
                md += [text, f"Load average before these rows: {load:.1f}.", ""]
            finally:
                torch.set_num_threads(threads)
        md += _eval_section(cpu_cfg, dev, plan, csv, results)
        md += _data_section(dev, plan, csv, results, main)
        md += _study_section(dev, csv, results)
        md[header:header] = _targets_section(results) + [""]
    finally:
        torch.set_num_threads(old_threads)
    results["seconds"] = time.perf_counter() - started
    results["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    md += ["", f"Took {results['seconds'] / 60:.1f} min; load average at the end: "
               f"{results['load_average_1m_end']}."]
    _write(out_dir, "\n".join(md) + "\n", csv, results)
    print("\n".join(md))
    print(f"\nwritten: {out_dir / 'perf.md'}, perf.csv, perf.json")
    return results


def _floor_section(cfg, dev, plan: Plan, csv: list, results: dict) -> list[str]:
    t = perf_train.kernel_floor(cfg, dev, plan.rounds_ablation)
    ours_step, ours_kernels, peer_step, peer_kernels = t.values()
    bound = peer_step.seconds / ours_kernels.seconds
    results["kernel_floor"] = {k: v.seconds for k, v in t.items()} | {"speedup_bound": bound}
    rows = []
    for full, kernels in ((ours_step, ours_kernels), (peer_step, peer_kernels)):
        rest = full.seconds - kernels.seconds
        rows.append([full.name.split(":")[0], f"{1000 * full.seconds:.0f}", f"{1000 * kernels.seconds:.0f}",
                     f"{1000 * rest:.0f} ({100 * rest / full.seconds:.0f}%)"])
        csv.append({"section": "kernel_floor", "name": full.name.split(":")[0], "step_ms": 1000 * full.seconds,
                    "kernels_ms": 1000 * kernels.seconds})
    return ["### Where the step goes: the shared kernels vs everything else (cpu preset)", "",
            _table(["network", "step (ms)", "conv + attention + matmul kernels alone (ms)",
                    "everything else (ms)"], rows), "",
            "The kernels' calls (forward and backward, same arguments) are recorded from one step and replayed "
            "alone. Both networks run the same oneDNN convolutions and SDPA attention on the same shapes, so even "
            f"an implementation with nothing else would be at most x{bound:.2f} faster than the peer's step.", ""]


def _ablation_section(cfg, dev, plan: Plan, csv: list, results: dict) -> list[str]:
    rows = perf_train.ablations(cfg, dev, plan.rounds_ablation, with_compile=plan.compile)
    base = next(iter(rows.values()))
    table = []
    for label, c in rows.items():
        rel = base.timing.seconds / c.timing.seconds
        per_round = round_ratios(base.timing, c.timing)
        span = "" if c is base else f"[{min(per_round):.2f}, {max(per_round):.2f}]"
        table.append([label, _fmt(c.timing.per_second, 2), f"x{rel:.2f}", span, c.note])
        csv.append({"section": "ablation", "name": label, "images_per_s": c.timing.per_second, "vs_default": rel,
                    "vs_default_min": min(per_round), "vs_default_max": max(per_round)})
    results["ablation"] = {label: c.timing.per_second for label, c in rows.items()}
    return ["### Ablation of the speed switches (cpu preset, one switch at a time)", "",
            _table(["variant", "img/s", "vs default", "rounds' range", "note"], table), "",
            f"vs default: the ratio of the medians; rounds' range: the lowest and highest ratio of the "
            f"{plan.rounds_ablation} rounds, which time every variant in turn. A range that spans x1.00 is within "
            "this machine's noise.", ""]


def _eval_section(cfg, dev, plan: Plan, csv: list, results: dict) -> list[str]:
    md = ["## Sampling", ""]
    timings = perf_eval.sampling(cfg, dev, plan.sample_batch, plan.ddpm_steps, plan.ddim_steps, plan.rounds_sampling)
    table = []
    for label, t in timings.items():
        steps = plan.ddpm_steps if label.startswith("DDPM") else plan.ddim_steps
        per_step = t.seconds / steps * 1000
        table.append([label, plan.sample_batch, _fmt(t.per_second, 3), _fmt(per_step), _fmt(per_step / t.items, 2)])
        csv.append({"section": "sampling", "name": label, "images_per_s": t.per_second, "ms_per_step": per_step})
    results["sampling"] = {label: t.per_second for label, t in timings.items()}
    md += [_table(["sampler", "batch", "img/s", "ms per step (batch)", "ms per step per image"], table), "",
           "## FID feature extraction (InceptionV3 pool3, same uint8 images)", ""]
    fid = perf_eval.fid_features(dev, plan.fid_images, cfg.data.image_size, plan.rounds_fid)
    ours, theirs = fid["timings"].values()
    speedup = theirs.seconds / ours.seconds
    results["fid"] = {"speedup": speedup, "max_abs_diff": fid["max_abs_diff"], "ours_images_per_s": ours.per_second,
                      "pytorch_fid_images_per_s": theirs.per_second}
    for t in (ours, theirs):
        csv.append({"section": "fid_features", "name": t.name, "images_per_s": t.per_second})
    md += [_table(["path", "img/s", "speed-up"],
                  [[ours.name, _fmt(ours.per_second, 2), f"x{speedup:.2f}"],
                   [theirs.name, _fmt(theirs.per_second, 2), "x1.00"]]),
           "", f"{fid['n_images']} images of {fid['size']} px (resized to 299 inside), batch {fid['batch']}; "
           f"max |feature difference| = {fid['max_abs_diff']:.2e}.", ""]
    return md


def _data_section(dev, plan: Plan, csv: list, results: dict, main: dict) -> list[str]:
    step_rate = main["images_per_s"]
    with tempfile.TemporaryDirectory(prefix="perf-data-") as cache:
        timings = perf_data.pipeline(Path(cache), plan.memory_images, dev, 3, list(plan.data_tasks))
        memory = perf_data.epoch_memory(Path(cache), plan.memory_images, [1, 8])
    table = []
    for label, t in timings.items():
        table.append([label, _fmt(t.per_second, 0), f"x{t.per_second / step_rate:,.0f}",
                      f"{100 * step_rate / t.per_second:.2f}%"])
        csv.append({"section": "data", "name": label, "images_per_s": t.per_second})
    results["data"] = {label: t.per_second / step_rate for label, t in timings.items()}
    mem_rows = [[f"N={n}", m["images"], m["steps"], _fmt(m["rss_before_mib"], 0), _fmt(m["rss_peak_mib"], 0),
                 _fmt(m["rss_peak_mib"] - m["rss_before_mib"], 0), _fmt(m["seconds"])] for n, m in memory.items()]
    results["memory"] = memory
    for n, m in memory.items():
        csv.append({"section": "memory", "name": f"N={n}", **m})
    return ["## Data pipeline (uint8 cache -> float batch -> channels_last -> task.make)", "",
            _table(["task", "img/s", "vs training step", "share of a step"], table), "",
            f"Training step (cpu preset, ours): {_fmt(step_rate, 2)} img/s.", "",
            "## Peak memory of one training epoch (model.trainer.train, cpu preset, synthetic-faces, "
            f"{plan.memory_images} images, one process each)", "",
            _table(["subsets", "images", "steps", "RSS before (MiB)", "peak RSS (MiB)", "increase (MiB)", "s"],
                   mem_rows), "",
            "An epoch with N = 8 trains on 1/8 of the images (fewer steps); both hold the whole uint8 split, "
            "the network, its EMA copy and Adam's moments. 'Before' is the process after its imports.", ""]


def _targets_section(results: dict) -> list[str]:
    t, rows = TARGETS, []
    for key, label in (("train_cpu", "cpu preset"), ("train_large", "larger config")):
        r = results[key]
        if "speedup_vs_peer" in r:
            lo, hi = r.get("speedup_range", [math.nan, math.nan])
            rows.append([f"training step >= x{t['speedup_vs_peer']} {r['best_peer']} ({label}, params within "
                         f"{100 * r['param_gap']:.2f}%)", f"x{r['speedup_vs_peer']:.2f} (rounds x{lo:.2f}-x{hi:.2f})",
                         _status(r["speedup_vs_peer"] >= t["speedup_vs_peer"])
                         + (" (within the rounds' range)" if lo <= t["speedup_vs_peer"] <= hi else "")])
        else:
            rows.append([f"training step >= x{t['speedup_vs_peer']} diffusers ({label})", "-",
                         f"skipped: {perf_train.PEERS_HINT}"])
        rows.append([f"training step >= {100 * t['share_of_peak']:.0f}% of the sgemm peak ({label})",
                     f"{100 * r['share_of_peak']:.0f}% (of the conv figure: "
                     f"{100 * r['share_of_peak'] * results['matmul_peak_gflops'] / results['conv_peak_gflops']:.0f}%)",
                     _status(r["share_of_peak"] >= t["share_of_peak"])])
    f = results["fid"]
    rows.append([f"Inception features >= x{t['fid_speedup']} pytorch-fid (max diff {f['max_abs_diff']:.1e})",
                 f"x{f['speedup']:.2f}", _status(f["speedup"] >= t["fid_speedup"] and f["max_abs_diff"] < 1e-4)])
    slowest = min(results["data"].values())
    rows.append(["data pipeline faster than the training step (slowest task)", f"x{slowest:,.0f}",
                 _status(slowest >= t["data_vs_step"])])
    s = results["study"]
    rows.append([f"share of a study's wall time spent training >= {100 * t['training_share']:.0f}% "
                 f"(smoke study; the target is for the cpu scale)", f"{100 * s['share']:.1f}%",
                 _status(s["share"] >= t["training_share"])])
    results["target_status"] = {r[0]: r[2] for r in rows}
    bound = results.get("kernel_floor", {}).get("speedup_bound")
    why = [] if bound is None else [
        "", "What bounds the speed-up over the peer for an implementation of the same architecture: "
        "both networks spend most of their step in the same oneDNN convolution and SDPA kernels; replayed alone, "
        f"ours' kernels would still make it at most x{bound:.2f} faster than the peer's whole step "
        "(section 'Where the step goes')."]
    note = ["", "Ratios are of medians over alternated rounds; 'rounds': the lowest and highest ratio of a single "
            "round. A target inside that range is met or missed within this machine's noise: two runs can disagree."]
    return ["## Targets", "", _table(["target", "measured", "status"], rows), *note, *why]


def _study_section(dev, csv: list, results: dict) -> list[str]:
    r = training_share(str(dev))
    results["study"] = r
    csv.append({"section": "study", "name": r["study"], "wall_seconds": r["wall_seconds"],
                "train_seconds": r["train_seconds"], "share": r["share"]})
    return ["## Share of a study's wall time spent training", "",
            _table(["study", "trials", "runs", "wall (s)", "training (s)", "share"],
                   [[f"`{r['study']}`", r["trials"], r["runs"], _fmt(r["wall_seconds"]), _fmt(r["train_seconds"]),
                     f"{100 * r['share']:.1f}%"]]), "",
            "Wall: `bench run` in this process, from loading the study to its written report (no interpreter "
            "start). Training: the runs' own `train_seconds` (optimizer steps; evaluation, checkpoints, data "
            "loading, Optuna, records and report excluded). bench/perf/study.py.", ""]


def _write(out_dir: Path, md: str, csv: list[dict], results: dict) -> None:
    import pandas as pd

    (out_dir / "perf.md").write_text(md)
    pd.DataFrame(csv).to_csv(out_dir / "perf.csv", index=False)
    (out_dir / "perf.json").write_text(json.dumps(results, indent=2, default=str))
