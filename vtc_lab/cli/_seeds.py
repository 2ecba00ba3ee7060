"""`seeds=N`: run every configuration of a command with N seeds, as one more sweep axis.

Hydra decides the jobs of a multirun from the command line and the sweeper's `params` before
any app config exists, so a config key cannot add a sweep axis; the `train` and `eval` entry
points turn `seeds=N` into the override `<seed key>=0,1,...,N-1` (and `-m`) before Hydra parses
the command. `vtc-lab train experiment=toy seeds=3` is then exactly
`vtc-lab train -m experiment=toy optim.seed=0,1,2`: the preset's two memories x three seeds,
six jobs. `seeds=1` (the default) changes nothing. The seed key's short name is `seed`
(`vtc_lab.tracking.provenance.KEY_PARAMS`): runs are tagged `vtc.seed` and named `<...>-s<seed>`.
"""

from __future__ import annotations

SEEDS_ARG = "seeds"
MULTIRUN_FLAGS = ("-m", "--multirun")


def expand_seeds(argv: list[str], seed_key: str) -> list[str]:
    """`argv` with `seeds=N` replaced by the sweep override of `seed_key` over 0..N-1 (plus
    `-m` when N > 1). A bad N, or `seeds=` together with an explicit `seed_key=`, raises
    ValueError naming both."""
    given = [a for a in argv if a.startswith(f"{SEEDS_ARG}=")]
    if not given:
        return list(argv)
    if len(given) > 1:
        raise ValueError(f"{SEEDS_ARG}= given {len(given)} times: {given}")
    text = given[0].split("=", 1)[1]
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{SEEDS_ARG} must be a whole number >= 1 (how many seeds per "
                         f"configuration), got {text!r}")
    at = argv.index(given[0])
    rest = argv[:at] + argv[at + 1:]
    clash = [a for a in rest if a.lstrip("+~").startswith(f"{seed_key}=")]
    if clash:
        raise ValueError(f"{SEEDS_ARG}={n} and {clash[0]} both set the seed; keep one "
                         f"({SEEDS_ARG}=N sweeps {seed_key}=0..N-1)")
    if n == 1:
        return rest
    # in place of `seeds=N`: overrides must stay together, before any trailing option
    sweep = f"{seed_key}={','.join(str(i) for i in range(n))}"
    flags = [] if any(a in MULTIRUN_FLAGS for a in rest) else ["-m"]
    return flags + argv[:at] + [sweep] + argv[at + 1:]
