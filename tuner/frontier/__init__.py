"""The frontier: which student to ship, by test accuracy against served latency.

- `measure`: every completed trial rebuilt, exported, served in one model server and timed
  (batch-1 latency, batch-32 throughput), with its mimic diagnostics; `frontier/` files.
- `pareto`: the textbook dominance rule (at least as good on both axes, strictly better on one).
- `table`: `frontier.csv`, `frontier.md`, `frontier.png`, `reliability.png` (no TensorFlow).

`python -m tuner.frontier --run DIR` measures a run (`__main__.py`). May import `mimic_tf`,
`serving` (export, the sandbox server, the client), `tuner.artifacts` and `tuner.search`.
"""
