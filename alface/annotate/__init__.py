"""Label batches out to people and their labels back in.

``export`` writes a batch (batch.csv, tasks.json for Label Studio, sheet.png); ``ingest``
imports a CSV or a Label Studio export into the store; ``agreement`` measures how well
annotators agree (Cohen's kappa, drift) for ``alface status``.
"""

from __future__ import annotations

from alface.errors import AlfaceError


class AnnotationError(AlfaceError, ValueError):
    """A label file, batch or guideline that cannot be used."""
