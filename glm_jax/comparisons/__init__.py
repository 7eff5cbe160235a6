"""The paper's comparisons at small scale (`python -m glm_jax.reproduce`): every variant pretrained
on the embedded default corpus over several seeds, then evaluated the same way (docs/comparisons.md).

`plan` says what runs (variants, evaluations, scales), `jobs` runs one piece in this process,
`report` turns the recorded results into the table and the figure.
"""
