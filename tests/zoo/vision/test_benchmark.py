"""benchmarks/zoo_vision.py in small mode: the tables of docs/zoo-vision.md come from real figures."""

from __future__ import annotations

from benchmarks.zoo_vision import markdown


def test_markdown_tables(vision_figures, vision_family):
    text = markdown(vision_figures)
    for task in vision_family.tasks:
        assert f"| {task} |" in text
    for name in ("badnets", "badmerging-on", "badmerging-off"):
        assert f"| {name} |" in text
    ta = vision_figures["clean_merges"]["task_arithmetic"]["mean_normalised"]
    assert f"**{100 * ta:.1f}%**" in text
