"""The Ray executor gives the local executor's results: features, near-dup
clusters, every sampling design, recipes; through a dead worker and a
killed, resumed job. One local Ray (2 CPUs, no dashboard; tests/pipeline/conftest.py)
serves the session."""
import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")

from thresher import api  # noqa: E402
from thresher.features.base import Featurizer  # noqa: E402
from thresher.features.execution import use_executor  # noqa: E402
from thresher.features.featurize import featurize  # noqa: E402
from thresher.features.minhash import near_duplicate_clusters  # noqa: E402
from thresher.features.store import FeatureStore  # noqa: E402
from thresher.pipeline.executors.ray_dedup import near_duplicate_clusters_ray  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

FEATURES = ["text", "quality", "tags", "exact_dup", "near_dup", "embed_static", "cluster", "complexity",
            "quality_score"]


@pytest.fixture(scope="module", autouse=True)
def small_shards():
    """Pools read by `--executor ray` are cut into ~10 shards of 64 KB, so every
    CLI test below also checks the sharded read, featurize and write."""
    from thresher.data import shards

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shards, "SHARD_BYTES", 64 << 10)
        yield


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """Alpaca rows over 4 tasks with planted near copies, exact copies and empty inputs."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(800)])
    tasks = ["qa", "code", "chat", "math"]
    rows = []
    for i in range(n):
        if i > 10 and rng.random() < 0.15:  # a near or exact copy of an earlier row
            src = dict(rows[int(rng.integers(0, i))])
            words = src["output"].split()
            if rng.random() < 0.6 and words:
                words[int(rng.integers(len(words)))] = "changed"
            rows.append({**src, "output": " ".join(words), "id": f"r{i}"})
            continue
        task = tasks[int(rng.integers(len(tasks)))]
        rows.append({"id": f"r{i}", "task": task,
                     "instruction": f"{task}: " + " ".join(rng.choice(vocab, int(rng.integers(3, 15)))),
                     "input": "" if rng.random() < 0.5 else " ".join(rng.choice(vocab, 8)),
                     "output": " ".join(rng.choice(vocab, int(rng.integers(0, 40))))})
    return rows


@pytest.fixture(scope="module")
def pool_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(3000)))
    return path


def run(args, capsys):
    return run_cli(args, capsys)


def without_executor(manifest_path) -> dict:
    data = json.loads(open(manifest_path).read())
    data.pop("executor", None)
    data["output"].pop("path")
    return data


# -- features -----------------------------------------------------------------------
def test_featurize_on_ray_gives_the_local_bytes(ray_executor, pool_path, tmp_path):
    ds = api.read(pool_path)
    local = featurize(ds, FEATURES, store=FeatureStore(tmp_path / "local", chunk_rows=700))
    store = FeatureStore(tmp_path / "ray", chunk_rows=700)
    with use_executor(ray_executor):
        remote = featurize(ds, FEATURES, store=store)
    assert store.stats.parts_computed > 5  # the row featurizers really went out in parts
    assert remote.schema.remove_metadata() == local.schema.remove_metadata()
    assert remote.equals(local)
    # the caches hold the same parts, byte for byte
    local_parts = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("part-*.parquet"))
    ray_parts = sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("part-*.parquet"))
    assert local_parts == ray_parts
    for rel in local_parts:
        assert (tmp_path / "local" / rel).read_bytes() == (tmp_path / "ray" / rel).read_bytes(), rel


def test_featurize_cli_with_executor_ray_exports_the_same_file(ray_executor, pool_path, tmp_path, capsys):
    for name in ("local", "ray"):
        code, _, err = run(["featurize", pool_path, "--features", "text,near_dup,tags", "--cache", tmp_path / name,
                            "--out", tmp_path / f"{name}.parquet", "--executor", name, "-q"], capsys)
        assert code == 0, err
    assert (tmp_path / "local.parquet").read_bytes() == (tmp_path / "ray.parquet").read_bytes()


def test_executor_errors_exit_2(pool_path, tmp_path, capsys):
    code, _, err = run(["featurize", pool_path, "--executor", "spark", "--cache", tmp_path], capsys)
    assert code == 2 and "unknown executor 'spark'" in err
    code, _, err = run(["featurize", pool_path, "--ray-address", "auto", "--cache", tmp_path], capsys)
    assert code == 2 and "--ray-address needs --executor ray" in err


# -- near-dedup -----------------------------------------------------------------------
@pytest.mark.parametrize("threshold, max_bucket, block_rows", [(0.8, 16, 400), (0.5, 2, 250), (0.9, 16, 5000)])
def test_ray_near_dup_clusters_equal_local(ray_executor, threshold, max_bucket, block_rows):
    rows = synthetic_rows(2500, seed=int(threshold * 10))
    texts = pa.array([r["instruction"] + " " + r["output"] for r in rows] + ["", "   "])
    local = near_duplicate_clusters(texts, threshold=threshold, max_bucket=max_bucket, shingle_size=2)
    remote = near_duplicate_clusters_ray(ray_executor.ray, texts, threshold=threshold, max_bucket=max_bucket,
                                         shingle_size=2, block_rows=block_rows, cpus=2)
    assert remote.stats["blocks"] == -(-len(texts) // block_rows)
    assert np.array_equal(remote.dup_cluster, local.dup_cluster)
    assert remote.stats["rows_in_clusters"] > 100  # the planted copies were found, not a trivial equality
    for key in ("empty_rows", "identical_signature_rows", "candidate_pairs", "capped_buckets", "verified_pairs"):
        assert remote.stats[key] == local.stats[key], key
    if max_bucket == 2:
        assert local.stats["capped_buckets"] > 0  # the star rule for big buckets was exercised


def test_blocks_ship_only_their_own_rows():
    import pickle

    from thresher.pipeline.executors.ray_dedup import block_texts

    texts = pa.array([f"row {i} " + "word " * 50 for i in range(20_000)], pa.large_string())
    block = block_texts(texts, 1000, 1100)
    assert block.to_pylist() == texts.slice(1000, 100).to_pylist()
    assert len(pickle.dumps(block)) < len(pickle.dumps(texts)) / 100  # not the whole pool's buffers


def test_dedup_select_on_ray_keeps_the_same_ids(ray_executor, pool_path, tmp_path, capsys):
    manifests = {}
    for name in ("local", "ray"):
        out = tmp_path / f"{name}.jsonl"
        code, _, err = run(["select", pool_path, "-m", "dedup", "--kind", "near", "-o", out, "--cache",
                            tmp_path / f"cache-{name}", "--executor", name, "-q"], capsys)
        assert code == 0, err
        manifests[name] = tmp_path / f"{name}.manifest.json"
    local, remote = without_executor(manifests["local"]), without_executor(manifests["ray"])
    assert remote == local
    assert local["diagnostics"]["duplicates_removed"] > 100
    assert json.loads(manifests["ray"].read_text())["executor"]["name"] == "ray"
    assert "executor" not in json.loads(manifests["local"].read_text())


# -- sampling designs ------------------------------------------------------------------
DESIGNS = {
    "random": ["--n", "300"],
    "stratified": ["--n", "300", "--by", "instruction_type", "--allocation", "neyman", "--variance-of",
                   "response_words"],
    "cluster": ["--n", "300", "--clusters", "kmeans:12", "--stages", "2", "--rows-per-cluster", "30"],
    "systematic": ["--n", "300", "--sort-by", "chars"],
    "pps": ["--n", "300", "--size-by", "response_words", "--floor", "1"],
}


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_every_sampling_design_on_ray_draws_the_same_rows(ray_executor, pool_path, tmp_path, capsys, design):
    manifests = {}
    for name in ("local", "ray"):
        out = tmp_path / f"{name}.jsonl"
        code, _, err = run(["sample", pool_path, "--design", design, *DESIGNS[design], "--seed", "7", "-o", out,
                            "--cache", tmp_path / f"cache-{name}", "--executor", name, "-q"], capsys)
        assert code == 0, err
        manifests[name] = tmp_path / f"{name}.manifest.json"
    local, remote = without_executor(manifests["local"]), without_executor(manifests["ray"])
    assert len(local["selected_ids"]) >= 250
    assert remote == local
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "ray.jsonl").read_bytes()


def test_recipe_executor_ray_matches_local(ray_executor, pool_path, tmp_path, capsys):
    recipes = {}
    for name in ("local", "ray"):
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(f"data: {pool_path}\nseed: 3\ncache: {tmp_path / ('cache-' + name)}\n"
                          f"executor: {name}\nsteps:\n  - dedup: {{kind: near}}\n"
                          f"  - mixture: {{by: task, n: 400, within: {{deita: {{threshold: 0.999}}}}}}\n"
                          f"output: {tmp_path / (name + '.jsonl')}\n")
        code, _, err = run(["run", recipe, "-q"], capsys)
        assert code == 0, err
        recipes[name] = tmp_path / f"{name}.manifest.json"
    local, remote = without_executor(recipes["local"]), without_executor(recipes["ray"])
    for m in (local, remote):
        m.pop("recipe")  # names its own cache folder and executor
    assert len(local["selected_ids"]) >= 300
    assert remote == local


def test_recipe_with_an_unknown_executor_names_the_line(pool_path, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {pool_path}\nexecutor: dask\nsteps:\n  - dedup: {{kind: exact}}\n"
                      f"output: {tmp_path / 'o.jsonl'}\n")
    code, _, err = run(["run", recipe], capsys)
    assert code == 2 and "r.yaml:2" in err and "unknown executor 'dask'" in err


# -- faults ----------------------------------------------------------------------------
def test_a_worker_killed_mid_job_is_retried_to_the_same_features(ray_executor, pool_path, tmp_path):
    marker = tmp_path / "killed-once"

    class DiesOnce(Featurizer):
        """Word counts; the first worker to see row r1500 dies on the spot."""
        name = "dies_once"
        output_columns = ("n_words",)

        def __init__(self, marker: str = ""):
            self.marker = marker

        def compute(self, batch):
            ids = batch.column("id").to_pylist()
            if "r1500" in ids and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os._exit(1)  # the worker process is gone, mid-task
            words = [len((p or "").split()) + len((r or "").split())
                     for p, r in zip(batch.column("prompt").to_pylist(), batch.column("response").to_pylist())]
            return {"n_words": pa.array(words, pa.int64())}

    DiesOnce.inputs = ("id", "prompt", "response")
    ds = api.read(pool_path)
    featurizer = DiesOnce(str(marker))
    survived = tmp_path / "already-died"  # in this process the marker exists, so nothing dies here
    survived.touch()
    expected = FeatureStore(tmp_path / "local", chunk_rows=400).get(ds, DiesOnce(str(survived)))
    with use_executor(ray_executor):
        got = FeatureStore(tmp_path / "ray", chunk_rows=400).get(ds, featurizer)
    assert marker.exists()  # a worker really died
    assert got.equals(expected)


def test_a_killed_job_resumes_at_the_first_missing_part(ray_executor, pool_path, tmp_path):
    class FailsAt(Featurizer):
        """Prompt lengths; raises (the job fails) on the part holding `fail_id`."""
        name = "fails_at"
        output_columns = ("prompt_len",)
        inputs = ("id", "prompt")

        def __init__(self):
            self.fail_id = None

        def compute(self, batch):
            if self.fail_id in batch.column("id").to_pylist():
                raise RuntimeError("job killed here")
            return {"prompt_len": pa.array([len(p or "") for p in batch.column("prompt").to_pylist()], pa.int64())}

    ds = api.read(pool_path)
    failing = FailsAt()
    failing.fail_id = "r2200"  # part 5 of 8 (400 rows each); not a param, so the cache key is the same
    store = FeatureStore(tmp_path / "cache", chunk_rows=400)
    with use_executor(ray_executor), pytest.raises(Exception, match="job killed here"):
        store.get(ds, failing)
    entry = store.entry_dir(ds, failing)
    written = sorted(p.name for p in entry.glob("part-*.parquet"))
    # the parts before the failing one that came back before Ray aborted, in order, and never the failing one
    assert written == [f"part-{i:05d}.parquet" for i in range(len(written))] and len(written) <= 5
    assert not (entry / "_SUCCESS").exists()
    resumed = FeatureStore(tmp_path / "cache", chunk_rows=400)
    with use_executor(ray_executor):
        table = resumed.get(ds, FailsAt())
    assert resumed.stats.parts_resumed == len(written)
    assert resumed.stats.parts_resumed + resumed.stats.parts_computed == 8
    assert table.equals(FeatureStore(tmp_path / "fresh", chunk_rows=400).get(ds, FailsAt()))


def test_near_dup_survives_a_killed_signature_worker(ray_executor):
    """A worker computing MinHash signatures is SIGKILLed mid-job; Ray reruns its task."""
    rows = synthetic_rows(40_000, seed=5)
    texts = pa.array([" ".join([r["instruction"], r["input"], r["output"]] * 4) for r in rows])
    expected = near_duplicate_clusters(texts, threshold=0.8).dup_cluster
    killed: list[int] = []

    def kill_one():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
            for line in ps.splitlines():
                if "ray::_signatures" in line:
                    pid = int(line.split()[0])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one)
    killer.start()
    got = near_duplicate_clusters_ray(ray_executor.ray, texts, threshold=0.8, block_rows=2000, cpus=2)
    killer.join()
    assert killed, "no signature task was seen running"
    assert np.array_equal(got.dup_cluster, expected)
