"""ROC of guard's ingestion probes on the zoo: thresholds calibrated on some seeds, figures on others.

    python -m benchmarks.probes [--calibration-seeds 0,1] [--held-out-seeds 3,4] [--families vision,lm]
                                [--skip PROBE,...] [--out FILE.md] [--svg FILE.svg] [--scores FILE.json]
                                [--save FILE.json] [--thresholds SAVED.json] [--earlier-scores] [--small]

1. Build (or find cached) both small zoo families for every seed, their attacks, MergeLock-protected
   copies and, on the held-out seeds, variants the probes were not designed on (benchmarks/probes_zoo.py).
2. Scan every case with every probe (guard.probes.scan, default settings: a probe's score does not
   depend on its threshold).
3. Calibrate each probe's threshold on the clean cases of the calibration seeds only:
   threshold = median + k x (max - median) of their scores, at least 1.1 x max, with k chosen on the
   calibration seeds too, by leave-one-seed-out (choose_spread). Every probe is measured; the combined
   decision uses the probes guard enables by default (ProbeSettings), and the calibration seeds' AUC of
   each probe is reported beside it.
4. Report on the held-out seeds: per probe and family the AUC (threshold-free) and the TPR / FPR at the
   calibrated threshold, the combined decision (a model is flagged when any probe reaches its
   threshold; its ROC sweeps one multiplier over all thresholds), every MergeLock-protected case, and the
   held-out variants. No figure is measured on a seed the thresholds were chosen on.

`--small` runs one seed for both roles with cheap probe settings: it proves the benchmark works (the
tests run it) and its figures are not an evaluation.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import statistics
import tempfile
import time

from benchmarks.probes_zoo import Case, all_cases

MARGIN = 0.5
# Multipliers k of the calibration rule threshold = median + k x (max - median) of the clean scores; the
# benchmark picks the smallest whose leave-one-seed-out false-positive rate on the calibration seeds is
# within FPR_GOAL (see choose_spread).
SPREADS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
FPR_GOAL = 0.05


def scan_case(case: Case, settings, shared: dict) -> dict:
    from guard.artifacts import open_model_dir
    from guard.probes.inputs import SafetyPair, ScanInputs, model_kind, read_calibration
    from guard.probes.scan import resolve_device, scan

    candidate = open_model_dir(case.model)
    pair = None if case.aligned is None else SafetyPair(open_model_dir(case.aligned), open_model_dir(case.unaligned))
    inputs = ScanInputs(candidate=candidate, base=open_model_dir(case.base),
                        peers=[open_model_dir(p) for p in case.peers], safety_pair=pair,
                        calibration=read_calibration(case.calibration, kind=model_kind(candidate)),
                        device=resolve_device(settings.device), shared=shared.setdefault(str(case.base), {}))
    report = scan(inputs, settings)
    return {r.probe: {"score": r.score, "seconds": r.seconds, "message": r.message, "truncated": r.truncated,
                      "measurements": r.measurements}
            for r in report.results if r.status == "ran"}


def calibrate(rows: list[dict], probes: list[str], *, spread: float = 1 + MARGIN) -> dict[str, float]:
    """Per probe, from the clean cases of `rows`: median + spread x (max - median), at least 1.1 x max."""
    thresholds = {}
    for probe in probes:
        clean = [r["scores"][probe]["score"] for r in rows if r["label"] == 0 and probe in r["scores"]
                 and math.isfinite(r["scores"][probe]["score"])]
        if clean:
            worst, typical = max(clean), statistics.median(clean)
            thresholds[probe] = max(typical + spread * (worst - typical), worst + 0.1 * abs(worst), 1e-3)
    return thresholds


def choose_spread(rows: list[dict], probes: list[str], in_decision: list[str]) -> tuple[float, list[dict]]:
    """The calibration rule's spread, chosen on the calibration seeds alone: for each candidate spread,
    calibrate on all calibration seeds but one and measure the combined decision on the one left out (every
    seed in turn); take the smallest spread whose pooled left-out FPR is within FPR_GOAL (the largest when
    none is). A margin fitted to the clean models seen is too tight for clean models not seen, by an amount
    only unseen clean models can show: the left-out seed stands in for them."""
    seeds = sorted({r["seed"] for r in rows})
    table = []
    for spread in SPREADS:
        fp = neg = tp = pos = 0
        for seed in seeds if len(seeds) > 1 else []:
            thresholds = calibrate([r for r in rows if r["seed"] != seed], probes, spread=spread)
            left_out = [r for r in rows if r["seed"] == seed and not r["held_out_variant"]]
            for r in left_out:
                flagged = combined_score(r, thresholds, in_decision) >= 1
                fp, neg = fp + (flagged and not r["label"]), neg + (not r["label"])
                tp, pos = tp + (flagged and r["label"]), pos + r["label"]
        table.append({"spread": spread, "fpr": fp / neg if neg else None, "tpr": tp / pos if pos else None,
                      "negatives": neg, "positives": pos})
    fine = [t["spread"] for t in table if t["fpr"] is not None and t["fpr"] <= FPR_GOAL]
    return (min(fine) if fine else (SPREADS[-1] if len(seeds) > 1 else 1 + MARGIN)), table


def auc(positives: list[float], negatives: list[float]) -> float | None:
    """Mann-Whitney estimate of P(score of an attacked case > score of a clean one), ties counted half."""
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def roc(positives: list[float], negatives: list[float]) -> list[tuple[float, float]]:
    points = [(0.0, 0.0)]
    for cut in sorted(set(positives + negatives), reverse=True):
        points.append((sum(n >= cut for n in negatives) / len(negatives), sum(p >= cut for p in positives) / len(positives)))
    return points + [(1.0, 1.0)]


def combined_score(row: dict, thresholds: dict[str, float], probes: list[str]) -> float:
    ratios = [v["score"] / thresholds[p] for p, v in row["scores"].items() if p in probes
              and v["score"] is not None and math.isfinite(v["score"])]
    return max(ratios) if ratios else -math.inf


def flagged_by(row: dict, thresholds: dict[str, float], probes: list[str]) -> list[str]:
    return [p for p, v in row["scores"].items() if p in probes and not (v["score"] < thresholds[p])]


def evaluate(rows: list[dict], thresholds: dict[str, float], in_decision: list[str]) -> dict:
    main = [r for r in rows if not r["held_out_variant"]]
    out = {"per_probe": [], "combined": {}}
    for probe in thresholds:
        for family in ("vision", "lm", "both"):
            scoped = [r for r in main if (family == "both" or r["family"] == family) and probe in r["scores"]]
            pos = [r["scores"][probe]["score"] for r in scoped if r["label"] == 1]
            neg = [r["scores"][probe]["score"] for r in scoped if r["label"] == 0]
            if not pos or not neg or (family == "both" and len({r["family"] for r in scoped}) < 2):
                continue
            out["per_probe"].append({
                "probe": probe, "family": family, "auc": auc(pos, neg), "positives": len(pos), "negatives": len(neg),
                "tpr": sum(p >= thresholds[probe] for p in pos) / len(pos),
                "fpr": sum(n >= thresholds[probe] for n in neg) / len(neg), "roc": roc(pos, neg)})
    for family in ("vision", "lm", "both"):
        scoped = [r for r in main if family == "both" or r["family"] == family]
        pos = [combined_score(r, thresholds, in_decision) for r in scoped if r["label"] == 1]
        neg = [combined_score(r, thresholds, in_decision) for r in scoped if r["label"] == 0]
        if pos and neg:
            out["combined"][family] = {"auc": auc(pos, neg), "tpr": sum(p >= 1 for p in pos) / len(pos),
                                       "fpr": sum(n >= 1 for n in neg) / len(neg), "positives": len(pos),
                                       "negatives": len(neg), "roc": roc(pos, neg)}
    return out


# The scores as the probes defined them before they were made independent of how far an expert moved: each
# probe keeps its earlier score as a measurement; `--earlier-scores` evaluates those instead.
EARLIER_SCORES = {"embedding": "unscaled", "patch_inversion": "gain"}


def with_earlier_scores(entry: dict) -> dict:
    """A cached case's scores with every probe of EARLIER_SCORES scored by its earlier definition."""
    scores = {}
    for probe, value in entry["scores"].items():
        earlier = value.get("measurements", {}).get(EARLIER_SCORES.get(probe, ""))
        scores[probe] = {**value, "score": earlier} if earlier is not None else value
    return {**entry, "scores": scores}


def run(*, calibration_seeds: list[int], held_out_seeds: list[int], small: bool = False,
        families: tuple[str, ...] = ("vision", "lm"), scores_path: pathlib.Path | None = None,
        thresholds: dict[str, float] | None = None, skip: tuple[str, ...] = (), earlier: bool = False) -> dict:
    """Scan, calibrate (unless `thresholds` are given: e.g. those of a run on another numeric path) and
    evaluate; `earlier`: with the probes' earlier score definitions (EARLIER_SCORES)."""
    from guard.probes.framework import all_probes
    from guard.probes.settings import ProbeSettings

    settings = all_enabled(small_settings() if small else ProbeSettings(), skip=skip)
    work = pathlib.Path(tempfile.mkdtemp(prefix="guard-probes-bench-"))
    cached = json.loads(scores_path.read_text()) if scores_path is not None and scores_path.is_file() else {}
    path = numeric_path()
    cached = {k.split("|", 1)[1] if k.startswith(("calibration|", "held-out|")) else k: v for k, v in cached.items()}
    cached = {k if k.count("|") == 3 else f"{path}|{k}": v for k, v in cached.items()}  # older files: this path
    rows, shared = [], {}
    plan = [(c, "calibration") for c in all_cases(calibration_seeds, work=work, families=families, variants=False,
                                                  small=small)]
    plan += [(c, "held-out") for c in all_cases(held_out_seeds, work=work, families=families, variants=not small,
                                               small=small)]
    for case, role in plan:
        key = f"{path}|{case.family}|{case.seed}|{case.name}"  # a score does not depend on the seed's role
        if key not in cached:
            start = time.process_time()
            cached[key] = {"scores": scan_case(case, settings, shared), "cpu_seconds": time.process_time() - start}
            if scores_path is not None:
                scores_path.write_text(json.dumps(cached, indent=1, sort_keys=True))
        rows.append({"role": role, "family": case.family, "seed": case.seed, "name": case.name, "label": case.label,
                     "held_out_variant": case.held_out_variant,
                     **(with_earlier_scores(cached[key]) if earlier else cached[key])})
    calibration = [r for r in rows if r["role"] == "calibration"]
    in_decision = [p for p in all_probes() if ProbeSettings().for_probe(p).enabled]
    spread, spread_table = (None, []) if thresholds else choose_spread(calibration, list(all_probes()), in_decision)
    thresholds = thresholds or calibrate(calibration, list(all_probes()), spread=spread)
    stored = {p: ProbeSettings().for_probe(p).threshold for p in thresholds}
    in_decision = [p for p in in_decision if p in thresholds]
    held = [r for r in rows if r["role"] == "held-out"]
    return {"calibration_seeds": calibration_seeds, "held_out_seeds": held_out_seeds, "small": small, "skipped": list(skip),
            "earlier_scores": earlier,
            "thresholds": thresholds, "stored_thresholds": stored, "in_decision": in_decision,
            "spread": spread, "spread_table": spread_table,
            "calibration_evaluation": evaluate(calibration, thresholds, in_decision),
            "evaluation": evaluate(held, thresholds, in_decision),
            "default_evaluation": evaluate(held, stored, in_decision),
            "rows": rows, "machine": f"{platform.machine()}, Python {platform.python_version()}, {path}"}


def numeric_path() -> str:
    """The CPU kernel path torch takes (ATEN_CPU_CAPABILITY selects another): zoo builds and scores differ
    by it, so cached scores are keyed by it."""
    import torch

    return f"cpu-{torch.backends.cpu.get_cpu_capability()}" if not torch.cuda.is_available() else "cuda"


def all_enabled(settings, *, skip: tuple[str, ...] = ()):
    """Every probe on but `skip`, so that the benchmark measures each one (the decision still uses the
    defaults')."""
    return settings.model_copy(update={name: settings.for_probe(name).model_copy(update={"enabled": name not in skip})
                                       for name in settings.probe_names()})


def small_settings():
    """Cheap data-driven settings for the small mode (the tests)."""
    from guard.probes.settings import ProbeSettings

    settings = ProbeSettings()
    return settings.model_copy(update={
        "patch_inversion": settings.patch_inversion.model_copy(update={"locations": ("bottom-right",), "steps": 15,
                                                                       "max_images": 24}),
        "max_margin": settings.max_margin.model_copy(update={"steps": 10, "restarts": 2}),
        "insertion": settings.insertion.model_copy(update={"max_prompts": 16, "max_tokens": 12}),
        "target_inversion": settings.target_inversion.model_copy(update={"max_prompts": 8, "max_first_tokens": 6})})


# ---- output -------------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def markdown(result: dict) -> str:
    ev = result["evaluation"]
    lines = [f"Calibration seeds {result['calibration_seeds']}, held-out seeds {result['held_out_seeds']}"
             + (" (SMALL MODE: one seed in both roles, cheap settings; not an evaluation)" if result["small"] else "")
             + (" (EARLIER SCORES: " + ", ".join(f"{p} scored by its `{m}` measurement" for p, m in EARLIER_SCORES.items())
                + ")" if result.get("earlier_scores") else "")
             + f"; {result['machine']}.", "",
             "Thresholds (calibrated on the calibration seeds' clean cases; stored = guard's defaults) and the AUC "
             "each probe has on the calibration seeds (which is how the default probe set was chosen):", "",
             "| probe | calibrated | stored | in the default decision | calibration AUC (family) |",
             "|---|---|---|---|---|"]
    cal_auc = {}
    for r in result["calibration_evaluation"]["per_probe"]:
        cal_auc.setdefault(r["probe"], []).append(f"{r['auc']:.3f} ({r['family']})")
    lines += [f"| {p} | {t:.4g} | {result['stored_thresholds'][p]:.4g} | {'yes' if p in result['in_decision'] else 'no'} "
              f"| {', '.join(cal_auc.get(p, ['-']))} |" for p, t in result["thresholds"].items()]
    if result.get("spread_table"):
        chosen = next(t for t in result["spread_table"] if t["spread"] == result["spread"])
        why = (f"the smallest whose leave-one-seed-out combined FPR on the calibration seeds is <= {FPR_GOAL:.0%}"
               if chosen["fpr"] is not None and chosen["fpr"] <= FPR_GOAL else
               f"the largest tried: NO k reaches a leave-one-seed-out combined FPR <= {FPR_GOAL:.0%} on the "
               "calibration seeds")
        lines += ["", f"Calibration rule: threshold = median + k x (max - median) of the calibration seeds' clean "
                      f"scores (at least 1.1 x max); k = {result['spread']:g}, {why}:", "",
                  "| k | left-out FPR % | left-out TPR % | clean / attacked |", "|---|---|---|---|"]
        lines += [f"| {t['spread']:g} | {_pct(t['fpr'])} | {_pct(t['tpr'])} | {t['negatives']} / {t['positives']} |"
                  for t in result["spread_table"]]
    lines += ["", "Per probe on the held-out seeds (AUC is threshold-free; TPR / FPR at the calibrated threshold):", "",
              "| probe | family | AUC | TPR % | FPR % | attacked / clean |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['probe']} | {r['family']} | {r['auc']:.3f} | {_pct(r['tpr'])} | {_pct(r['fpr'])} | "
              f"{r['positives']} / {r['negatives']} |" for r in ev["per_probe"]]
    lines += ["", "Combined decision (flag when any probe of the default decision reaches its threshold):", "",
              "| family | AUC | TPR % | FPR % | attacked / clean |", "|---|---|---|---|---|"]
    lines += [f"| {f} | {c['auc']:.3f} | {_pct(c['tpr'])} | {_pct(c['fpr'])} | {c['positives']} / {c['negatives']} |"
              for f, c in ev["combined"].items()]
    if "default_evaluation" in result:
        lines += ["", "The same decision at guard's shipped thresholds (ProbeSettings defaults, not calibrated here):", "",
                  "| family | TPR % | FPR % | attacked / clean |", "|---|---|---|---|"]
        lines += [f"| {f} | {_pct(c['tpr'])} | {_pct(c['fpr'])} | {c['positives']} / {c['negatives']} |"
                  for f, c in result["default_evaluation"]["combined"].items()]
    thresholds = result["thresholds"]
    held = [r for r in result["rows"] if r["role"] == "held-out"]
    variants = [r for r in held if r["held_out_variant"]]
    if variants:
        def flagged(label: int) -> str:
            scoped = [r for r in variants if r["label"] == label]
            return f"{sum(bool(flagged_by(r, thresholds, result['in_decision'])) for r in scoped)} of {len(scoped)}"

        lines += ["", f"Held-out variants (built for this benchmark, not by the zoo; not in the tables above): "
                      f"{flagged(1)} attacked and {flagged(0)} clean flagged."]
    if result.get("skipped"):
        lines += ["", f"Not measured (`--skip`): {', '.join(result['skipped'])}; the calibration seeds' scores of "
                      "a skipped probe are those cached from an earlier run, if any."]
    lines += ["", "Every held-out case (flagging probes at the calibrated thresholds; combined score = the largest "
              "score / threshold over the default decision's probes):", "",
              "| family | seed | case | label | flagged by | combined score |",
              "|---|---|---|---|---|---|"]
    for r in sorted(held, key=lambda r: (r["family"], r["held_out_variant"], r["name"], r["seed"])):
        label = ("attacked" if r["label"] else "clean") + (" (held-out variant)" if r["held_out_variant"] else "")
        lines.append(f"| {r['family']} | {r['seed']} | {r['name']} | {label} | "
                     f"{', '.join(flagged_by(r, thresholds, result['in_decision'])) or '-'} | "
                     f"{combined_score(r, thresholds, result['in_decision']):.3g} |")
    cpu = [r["cpu_seconds"] for r in result["rows"]]
    lines += ["", f"Scan CPU time per case: median {statistics.median(cpu):.1f} s, max {max(cpu):.1f} s "
              f"({len(cpu)} cases; every probe, data-driven ones single-threaded)."]
    return "\n".join(lines) + "\n"


def roc_svg(result: dict) -> str:
    """ROC curves of every probe (both families pooled where it applies to both) and of the combined decision."""
    from html import escape

    size, pad = 360, 40
    curves = [(f"{r['probe']} ({r['family']})", r["roc"]) for r in result["evaluation"]["per_probe"]
              if r["family"] in ("both", "vision", "lm") and not (r["family"] != "both" and any(
                  o["probe"] == r["probe"] and o["family"] == "both" for o in result["evaluation"]["per_probe"]))]
    curves += [(f"combined ({f})", c["roc"]) for f, c in result["evaluation"]["combined"].items()]
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
               "#17becf", "#000000", "#444444", "#888888"]
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{size + 260}' height='{size + 2 * pad}'>",
             f"<rect x='{pad}' y='{pad}' width='{size}' height='{size}' fill='none' stroke='#999'/>",
             f"<line x1='{pad}' y1='{pad + size}' x2='{pad + size}' y2='{pad}' stroke='#ccc' stroke-dasharray='3 3'/>",
             f"<text x='{pad + size / 2}' y='{pad + size + 30}' text-anchor='middle' font-size='12'>false-positive rate</text>",
             f"<text x='12' y='{pad + size / 2}' font-size='12' transform='rotate(-90 12 {pad + size / 2})' "
             f"text-anchor='middle'>true-positive rate</text>"]
    for i, (label, points) in enumerate(curves):
        colour = colours[i % len(colours)]
        path = " ".join(f"{pad + x * size:.1f},{pad + (1 - y) * size:.1f}" for x, y in points)
        width = 3 if label.startswith("combined") else 1.5
        parts.append(f"<polyline points='{path}' fill='none' stroke='{colour}' stroke-width='{width}'/>")
        parts.append(f"<text x='{pad + size + 10}' y='{pad + 14 * i + 10}' font-size='11' fill='{colour}'>"
                     f"{escape(label)}</text>")
    return "".join(parts) + "</svg>\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-seeds", default="0,1")
    parser.add_argument("--held-out-seeds", default="3,4")
    parser.add_argument("--families", default="vision,lm")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--skip", default="", help="probes not to measure (comma-separated)")
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument("--svg", type=pathlib.Path)
    parser.add_argument("--scores", type=pathlib.Path, help="JSON file of per-case scores, reused when it exists")
    parser.add_argument("--save", type=pathlib.Path, help="write the result (thresholds, evaluation) as JSON")
    parser.add_argument("--earlier-scores", action="store_true",
                        help="evaluate the probes' earlier score definitions (kept as measurements)")
    parser.add_argument("--thresholds", type=pathlib.Path,
                        help="a saved result whose thresholds to use instead of calibrating (no calibration seeds)")
    args = parser.parse_args(argv)
    seeds = lambda text: [int(s) for s in text.split(",") if s]  # noqa: E731
    cal, held = (seeds(args.calibration_seeds), seeds(args.held_out_seeds))
    if args.small:
        cal = held = [0]
    given = json.loads(args.thresholds.read_text())["thresholds"] if args.thresholds else None
    if given is not None:
        cal = []
    overlap = set(cal) & set(held)
    if overlap and not args.small:
        parser.error(f"seeds {sorted(overlap)} are in both roles")
    result = run(calibration_seeds=cal, held_out_seeds=held, small=args.small,
                 families=tuple(args.families.split(",")), scores_path=args.scores, thresholds=given,
                 skip=tuple(p for p in args.skip.split(",") if p), earlier=args.earlier_scores)
    text = markdown(result)
    from guard.artifacts.atomic import write_atomically

    if args.save:
        write_atomically(args.save, json.dumps(result, indent=1, default=str))
    if args.out:
        write_atomically(args.out, text)
    if args.svg:
        write_atomically(args.svg, roc_svg(result))
    print(text)


if __name__ == "__main__":
    main()
