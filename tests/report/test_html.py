"""The HTML report: escaping at one chokepoint, sections present or saying why
not, evaluation sections from results files, determinism."""
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from thresher.report.markup import Markup, esc, table, tag

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '"><img src=x onerror="window.__pwned=1">'
LINK = '<a href="javascript:window.__pwned=1">click me</a>'
BAD_LABEL = "<img src=x onerror=window.__pwned=1>"
AMP_LABEL = "a & b <c>"
BAD_FIELD = "<b onmouseover=window.__pwned=1>field</b>"
HOSTILE = (SCRIPT, IMG, LINK, BAD_LABEL, AMP_LABEL, BAD_FIELD)
SECTIONS = ("overview", "categories", "scores", "embedding", "trace", "representativeness", "compare", "curve",
            "active")


# -- builders shared with the other report tests -------------------------------
def write_hostile_pool(path: Path, n: int = 240, seed: int = 0) -> Path:
    """An alpaca pool whose text, category labels and a field name carry script payloads.

    Rows with a one-word answer fail `response_words >= 3`; hostile rows are among them."""
    rng = np.random.default_rng(seed)
    cats = rng.choice(["alpha", "beta", "gamma", BAD_LABEL, AMP_LABEL], size=n, p=[0.45, 0.25, 0.15, 0.1, 0.05])
    words = "the model answers each question with a short clear sentence about data".split()
    with path.open("w", encoding="utf-8") as f:
        for i, c in enumerate(cats):
            answer = " ".join(rng.choice(words, size=int(rng.integers(1, 12))))
            row = {"instruction": f"question {i} about {c}", "input": "", "output": answer, "category": str(c),
                   BAD_FIELD: "x" if i % 2 else "y", "score": float(rng.gamma(2.0))}
            if i in (1, 2):  # removed by the quality rule (one-word answer)
                row.update(instruction=f"{SCRIPT} {i}", input=IMG, output="no")
            if i in (3, 4):  # kept
                row.update(instruction=f"{LINK} {i}", output=f"{IMG} and {SCRIPT} kept as text")
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def make_run(tmp_path: Path, with_results: bool = True) -> Path:
    """A run folder: a quality-filtered subset + manifest + removed rows (+ compare, curve and
    active results files). Features are cached under tmp_path."""
    from thresher.api import read, write_selection
    from thresher.features.store import FeatureStore
    from thresher.pipeline.runner import StepSpec, run_steps, write_removed

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pool_path = write_hostile_pool(tmp_path / "pool.jsonl")
    pool = read(pool_path)
    run = run_steps(pool, [StepSpec("quality", {"where": "response_words >= 3 and score > 0.2"})], seed=0,
                    store=FeatureStore(tmp_path / "cache"))
    write_selection(pool, run.selection, run_dir / "picked.jsonl", command="select", extra={"trace": run.trace})
    write_removed(pool, run.removed, run_dir / "picked.removed.jsonl")
    if with_results:
        (run_dir / "results.json").write_text(json.dumps(compare_results()))
        (run_dir / "trajectory.json").write_text(json.dumps(active_trajectory()))
        (run_dir / "curve").mkdir()
        (run_dir / "curve" / "results.json").write_text(json.dumps(curve_results()))
    return run_dir


def compare_results() -> dict:
    def arm(name, rows, sdf, acc, f1, pir):
        return {"name": name, "rows": rows, "tokens": rows * 40, "sdf": sdf,
                "runs": [{"seed": s, "metrics": {"accuracy": acc + 0.01 * s}, "train_seconds": 1.0,
                          "train_tokens": rows * 40, "steps": 10} for s in range(3)],
                "summary": {"accuracy": {"mean": acc, "ci_low": acc - 0.03, "ci_high": acc + 0.03, "n": 3}},
                "pir": {"accuracy": {"mean": pir, "ci_low": pir - 0.05, "ci_high": pir + 0.05}},
                "per_class_f1": {"Yes": f1, BAD_LABEL: f1 - 0.1, "No": f1 + 0.05},
                "confusion": {"labels": ["Yes", BAD_LABEL, "No"], "matrix": [[30, 5, 2], [4, 20, 6], [1, 3, 40]]}}

    return {"kind": "compare", "metrics": ["accuracy"], "pool_rows": 240, "eval_rows": 111,
            "arms": [arm("full", 240, 1.0, 0.80, 0.78, 1.0), arm(f"selected {SCRIPT}", 120, 0.5, 0.79, 0.77, 0.987),
                     arm("random", 120, 0.5, 0.74, 0.70, 0.925)],
            "config": {"model": "tiny"}, "command": f"thresher compare {AMP_LABEL}"}


def curve_results(flip: bool = True) -> dict:
    """Accuracy points from err(n) = 3 n^-0.5 + 0.1 (accuracy = 1 - err when flip)."""
    a, b, c = 3.0, 0.5, 0.1
    rng = np.random.default_rng(1)
    points = []
    for frac in (0.1, 0.2, 0.4, 0.8, 1.0):
        rows = int(2000 * frac)
        for seed in range(3):
            err = a * rows ** -b + c + rng.normal(0, 0.005)
            points.append({"fraction": frac, "rows": rows, "seed": seed, "value": 1 - err if flip else err})
    ext = [{"factor": f, "rows": 2000 * f, "value": 1 - (a * (2000 * f) ** -b + c), "ci_low": 0.8, "ci_high": 0.9}
           for f in (2, 4)]
    return {"kind": "curve", "metric": "accuracy", "points": points,
            "fit": {"a": a, "b": b, "c": c, "a_ci": [2.5, 3.5], "b_ci": [0.4, 0.6], "c_ci": [0.05, 0.15]},
            "extrapolation": ext, "plateaued": False, "recommendation": f"More data is likely to help {AMP_LABEL}."}


def active_trajectory() -> dict:
    def strategy(slope):
        rounds = [{"round": r, "labeled": 20 + 20 * r, "accuracy": 0.5 + slope * r, "macro_f1": 0.4 + slope * r,
                   "kappa_vs_prev": 0.9, "stopped_reason": "budget" if r == 5 else None} for r in range(6)]
        mean = [0.5 + slope * r for r in range(6)]
        return {"seeds": [{"seed": 0, "rounds": rounds}], "mean": mean,
                "ci_low": [m - 0.02 for m in mean], "ci_high": [m + 0.02 for m in mean]}

    return {"kind": "active", "label_field": "category", "metric": "accuracy",
            "strategies": {"entropy": strategy(0.06), "random": strategy(0.04), f"margin {BAD_LABEL}": strategy(0.05)}}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, name, attrs):
        self.tags.append(name)
        self.attrs += [(name, k, v) for k, v in attrs]


def parse(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    return p


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    from thresher.report.html import write_report

    tmp = tmp_path_factory.mktemp("report")
    run_dir = make_run(tmp)
    result = write_report(run_dir, tmp / "report.html", cache_dir=str(tmp / "cache"))
    return result, (tmp / "report.html").read_text(encoding="utf-8")


# -- the escaping chokepoint --------------------------------------------------------
def test_esc_and_tag_escape_data_but_pass_markup():
    assert esc(SCRIPT) == "&lt;script&gt;window.__pwned=1&lt;/script&gt;"
    assert esc('"x\'') == "&quot;x&#x27;"
    assert tag("td", SCRIPT, Markup("<b>ok</b>")) == "<td>&lt;script&gt;window.__pwned=1&lt;/script&gt;<b>ok</b></td>"
    assert tag("td", "x", title='"><script>') == '<td title="&quot;&gt;&lt;script&gt;">x</td>'
    assert "&lt;c&gt;" in table(["h"], [[AMP_LABEL]])


@pytest.mark.parametrize("attrs", [{"onclick": "x"}, {"href": "javascript:alert(1)"}, {"href": "http://x.org"},
                                   {"src": "http://x.org/a.png"}, {"src": "data:text/html;base64,AAAA"},
                                   {"srcdoc": "<b>"}])
def test_tag_refuses_handlers_links_and_remote_sources(attrs):
    with pytest.raises(ValueError):
        tag("img" if "src" in attrs else "a", "x", **attrs)


def test_tag_refuses_unknown_elements():
    with pytest.raises(ValueError):
        tag("script", "x")


# -- the whole page -----------------------------------------------------------------
def test_every_section_is_rendered_with_its_figures(full_report):
    result, page = full_report
    assert result.sections == {s: True for s in SECTIONS}
    for sec in SECTIONS:
        assert f'<section id="{sec}">' in page
    parsed = parse(page)
    imgs = [v for name, k, v in parsed.attrs if name == "img" and k == "src"]
    # categories, scores, embedding, funnel, pir-sdf, per-class F1, confusion matrices, curve, active
    assert len(imgs) == len(result.figures) == 9
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in result.figures)


def test_hostile_strings_are_escaped_everywhere(full_report):
    _, page = full_report
    parsed = parse(page)
    assert "script" not in parsed.tags
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "h3",
                                "p", "nav", "a", "section", "div", "figure", "img", "figcaption", "strong", "table",
                                "caption", "thead", "tbody", "tr", "th", "td", "ul", "li", "pre", "span", "code"}
    assert not [a for a in parsed.attrs if a[1].startswith("on")]
    assert all(v.startswith("#") for name, k, v in parsed.attrs if k == "href")
    for text in HOSTILE:
        assert esc(text) in page, text  # shown, as text
    assert "javascript:window" in page and 'href="javascript' not in page
    csp = [v for name, k, v in parsed.attrs if name == "meta" and k == "content" and "default-src" in v]
    assert csp == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"]


def test_report_shows_trace_thresholds_and_removed_examples(full_report):
    _, page = full_report
    assert "fails response_words &gt;= 3" in page  # removal reason
    assert "response_words &gt;= 3" in page and "score &gt; 0.2" in page  # thresholds table
    removed = page[page.index("Examples of removed rows"):]
    assert esc(f"{SCRIPT} 1") in removed  # the hostile removed row is shown, escaped
    assert "PIR" in page and "0.987" in page and "[0.937, 1.037]" in page


def test_results_only_run_says_why_subset_sections_are_absent(tmp_path):
    from thresher.report.html import write_report

    (tmp_path / "results.json").write_text(json.dumps(curve_results()))
    result = write_report(tmp_path / "results.json", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert result.sections["curve"] and result.sections["overview"]
    for sec in ("categories", "scores", "embedding", "trace", "representativeness", "compare", "active"):
        assert not result.sections[sec]
        body = page[page.index(f'<section id="{sec}"'):]
        assert "Not shown: " in body[: body.index("</section>")]
    assert "no subset manifest" in page and "thresher compare" in page
    assert "The curve is still rising" in page and esc(AMP_LABEL) in page


def test_missing_pool_and_category_are_explained(tmp_path):
    from thresher.report.html import write_report

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"prompt": f"p {i}", "completion": f"c {i} " * (i % 5 + 1)}) + "\n"
                            for i in range(60)))
    from thresher.api import read, sample, write_selection

    ds = read(pool)
    write_selection(ds, sample(ds, "random", n=20, seed=0), tmp_path / "s.jsonl", command="sample")
    result = write_report(tmp_path / "s.jsonl", tmp_path / "a.html", cache_dir=str(tmp_path / "cache"))
    page = (tmp_path / "a.html").read_text()
    assert not result.sections["categories"] and "no category/task/label field" in page
    assert result.sections["embedding"] and result.sections["representativeness"]
    assert not result.sections["trace"] and "no trace" in page
    pool.unlink()
    result = write_report(tmp_path / "s.jsonl", tmp_path / "b.html")
    page = (tmp_path / "b.html").read_text()
    assert not any(result.sections[s] for s in ("categories", "scores", "embedding", "representativeness"))
    assert "is not found" in page


def test_same_run_same_bytes(tmp_path):
    from thresher.report.html import write_report

    run_dir = make_run(tmp_path, with_results=False)
    a = write_report(run_dir, tmp_path / "a.html", cache_dir=str(tmp_path / "cache"), figures=False)
    b = write_report(run_dir, tmp_path / "b.html", cache_dir=str(tmp_path / "cache"), figures=False)
    assert a.figures == [] and a.figures_dir is None
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


# -- pieces ---------------------------------------------------------------------------
def test_pca_recovers_the_dominant_direction():
    from thresher.report.sections import pca2

    rng = np.random.default_rng(0)
    direction = rng.normal(size=32)
    direction /= np.linalg.norm(direction)
    x = rng.normal(size=(2000, 1)) * 5 * direction + rng.normal(size=(2000, 32)) * 0.5
    xy, shares = pca2(x)
    # variance along the direction is 25 + 0.25 of a total 25 + 32 * 0.25 = 33
    assert shares[0] == pytest.approx(25.25 / 33, abs=0.04)
    assert abs(np.corrcoef(xy[:, 0], x @ direction)[0, 1]) > 0.99
    assert xy.shape == (2000, 2) and np.allclose(xy.mean(axis=0), 0, atol=1e-9)


@pytest.mark.parametrize("flip", [True, False])
def test_learning_curve_fit_is_drawn_on_the_metric_scale(flip):
    from thresher.report.evaluation import _fit_line

    res = curve_results(flip=flip)
    x, y, note = _fit_line(res["fit"], res["points"], res["extrapolation"])
    at = np.interp(2000, x, y)
    expected = 3 * 2000 ** -0.5 + 0.1
    assert at == pytest.approx(1 - expected if flip else expected, abs=1e-3)
    assert ("1 − error" in note) == flip
    assert x.max() == pytest.approx(8000)  # reaches the extrapolated sizes


def test_fit_on_another_scale_is_not_drawn():
    from thresher.report.evaluation import _fit_line

    res = curve_results()
    x, y, note = _fit_line({"a": 500.0, "b": 0.1, "c": 40.0}, res["points"], [])
    assert x is None and "not drawn" in note


def test_figure_labels_are_literal():
    from thresher.report.figures import category_bars, label, render

    assert label("a\nb   c") == "a b c"
    assert len(label("x" * 100)) == 40
    assert label("$x^2$") == r"\$x^2\$"
    names = ["$x^2$", "100% <b>", r"$\frac{a}$", "a\\$b$", "$"]
    fig = category_bars(names, np.array([5, 3, 2, 1, 1]), np.array([1, 1, 0, 1, 0]), "f$ $")
    out = render(fig)  # mathtext would fail on these; literal text does not
    assert out.png[:4] == b"\x89PNG" and out.width > 100 and out.height > 100
