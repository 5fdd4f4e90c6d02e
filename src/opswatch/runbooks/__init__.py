"""Runbooks generated from live state: for every enabled rule, Meaning, Impact, Diagnosis and
Mitigation filled from the configuration (the rule, its targets, its recovery binding) and the
state store (its transitions, recovery runs, evidence).

:mod:`~opswatch.runbooks.wording` holds the static text per rule, :mod:`~.commands` the safe
diagnosis commands per collector kind, :mod:`~.build` the model and what it reads,
:mod:`~.render` its JSON, Markdown and HTML.
"""
