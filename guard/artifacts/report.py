"""The data `guard inspect` reports about a validated ModelDir (JSON-ready), and its text rendering."""

from __future__ import annotations

from typing import Any

from guard.artifacts.model_dir import ModelDir


def inspect_report(model: ModelDir) -> dict[str, Any]:
    by_kind: dict[str, list[str]] = {}
    for f in model.files:
        by_kind.setdefault(f.kind, []).append(f.relpath)
    shard_rows = []
    for shard in model.shards:
        infos = [t for t in model.tensors.values() if t.shard == shard]
        shard_rows.append({"path": shard, "size": model.file(shard).size, "tensors": len(infos),
                           "tensor_bytes": sum(t.nbytes for t in infos)})
    refused = model.refused()
    return {
        "root": str(model.root),
        "architecture": model.architecture,
        "model_type": model.model_type,
        "architectures": model.architectures,
        "parameter_count": model.parameter_count(),
        "element_count": model.element_count(),
        "tensor_count": len(model.tensors),
        "tensor_bytes": model.tensor_bytes(),
        "dtypes": model.dtype_counts(),
        "index": model.index,
        "shards": shard_rows,
        "files": [{"path": f.relpath, "size": f.size, "kind": f.kind} for f in model.files],
        "files_by_kind": by_kind,
        "total_bytes": sum(f.size for f in model.files),
        "findings": [f.to_json() for f in model.findings],
        "refused": bool(refused),
        "verdict": "refused" if refused else "clean",
    }


def render_text(report: dict[str, Any]) -> str:
    lines = [
        f"model:        {report['root']}",
        f"architecture: {report['architecture'] or 'unknown'} (model_type {report['model_type'] or 'unknown'})",
        f"parameters:   {report['parameter_count']:,} in {report['tensor_count']} tensors, "
        f"{report['tensor_bytes']:,} bytes",
        "dtypes:       " + (", ".join(f"{k} {v:,}" for k, v in report["dtypes"].items()) or "none"),
        f"shards:       {len(report['shards'])}" + (f" (index {report['index']})" if report["index"] else ""),
    ]
    lines += [f"  {s['path']}  {s['size']:,} bytes, {s['tensors']} tensors" for s in report["shards"]]
    lines.append(f"files:        {len(report['files'])}, {report['total_bytes']:,} bytes")
    lines += [f"  {kind:<12}{', '.join(paths)}" for kind, paths in sorted(report["files_by_kind"].items())]
    lines.append(f"findings:     {len(report['findings'])}")
    lines += [f"  {f['severity']}: {f['path']} [{f['rule']}] {f['message']}" for f in report["findings"]]
    lines.append(f"verdict:      {report['verdict']}")
    return "\n".join(lines)
