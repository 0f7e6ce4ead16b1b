"""The bench room: every ``archrank bench`` harness, with one shared shape.

=================  ==============================================================
``common``         the JSON envelope (kind, schema, command, seeds, machine,
                   interrupted), ``{mean, std}`` over seeds, truth percentiles,
                   the printed results table, what an interruption keeps
``predictor``      ``bench predictor`` / ``bench speed``: predictors on a table
``search``         ``bench search``: search strategies on a table, many seeds
``oneshot``        ``bench oneshot``: supernet scores and their fit against a
                   multi-seed stand-alone truth
``oneshot_search`` ``bench oneshot-search``: one-shot search methods, their picks
                   trained stand-alone against the same truth
=================  ==============================================================

Harnesses import the rooms they measure (predictors, runs, oneshot, truth); nothing but the
CLI and the report imports a harness. Importing this package imports neither torch nor a
harness.
"""
