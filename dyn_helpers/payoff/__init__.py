"""When dynamic networks pay: sweeps of one property of the data against the static front.

`sweeps` is the harness (a `Sweep` of a property, its records and their fingerprints); `depth`,
`spatial` and `temporal` register each family's sweeps. `python -m dyn_helpers.tools.payoff`
(`make payoff`) writes the records that chapter 8's page "When dynamic networks pay" reads.
"""
