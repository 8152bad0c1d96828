"""What runs only on a developer's machine, never in Azure: the embedded log store and what fills it.

The embedded store is a DuckDB file queried through ``duckdb-kql`` with the same KQL text Log Analytics runs
(``embedded``); importers load diagnostic-settings archives and Log Analytics exports into it (``importers``,
``archives``, ``exports``, ``staging``, ``store``, ``replacement``); ``sample`` and ``sample_events`` make
deterministic sample logs and the matching Event Grid events. Its packages are in ``requirements-local.txt``.

The deployed package ``shared`` reaches this one only through the ``LogSource`` seam
(``shared.services.make_source`` imports ``local.embedded`` when no workspace is configured) and through the
CLI's local commands (``import``, ``sample``, ``events``), each importing it when it runs. ``.funcignore`` keeps
it out of the deployment, and ``tests/infra/test_layering.py`` proves that every deployed module imports without it.
"""
