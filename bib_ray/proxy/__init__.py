"""The fitted proxy: embedding sequences with an LM (``embedding``), fitting the closed-form proxy and
the auxiliary ensembles on the offline rows (``fitting``), scoring sequences with them (``scoring``)
and the artifact that carries them to the scoring service (``artifacts``)."""
