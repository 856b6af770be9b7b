import sys; sys.path.insert(0, "/work/main/tests")
from test_workflow import *
def test_dbg(fake_done):
    work, env = fake_done
    run = work / "results" / "runs" / "smoke" / "anomaly" / "d3po" / "seed0"
    print(sorted(p.name for p in run.iterdir()))
    (run / "eval.csv").unlink()
    out = smoke_run(work, env, dry=True).stdout
    print(out[-1500:])
    assert 0
