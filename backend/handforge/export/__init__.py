"""Labelled synthetic renders: scene samplers (``sampler``), labels (``labels``), dataset writers
(``writers``) and the export loop (``run``), driven by ``handforge export SPEC`` (``spec``)."""
