"""thresher: pick the training data that makes an LLM fine-tune work, and prove it.

    import thresher
    ds = thresher.read("examples/demo/pool.jsonl")
    sel = thresher.sample(ds, "stratified", n=500, by=["category"], seed=0)
    sel = thresher.select(ds, method="deita", n=1000, seed=0, score="response_words")
"""
from thresher._version import __version__

_API = ("read", "sample", "select", "run_recipe", "write_selection")


def __getattr__(name: str):
    # the API imports numpy/pyarrow; keep `import thresher` (and the CLI's --help) light
    if name in _API:
        from thresher import api

        return getattr(api, name)
    raise AttributeError(f"module 'thresher' has no attribute {name!r}")
