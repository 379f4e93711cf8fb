"""seqguard on Apache Spark: the batch scoring of `seqguard score`, distributed. Spark distributes; it does not
re-implement: rows are validated by `seqguard.io.validate_frame`, and windows, tokens, features and scores come from
`seqguard.batch_score.BatchScorer.score_frame` (the service's engine on the verified repository) inside grouped
pandas UDFs.

    from seqguard.spark import score
    scores = score(events_df, "s3://bucket/triton_repo_copy_on_local_disk")   # a DataFrame, same columns as the CLI

Plan: read (the mapping as column expressions) -> validate (mapInPandas; row errors counted per reason into a side
output) -> drop repeated (entity, event_id), first in file order wins -> keep only the rows a window can hold (the last
`max_events` events per entity-day, or per entity; a row_number filter that Spark applies partly before the
shuffle, so a hot entity with millions of events reaches the shuffle as a few hundred rows) -> groupBy(entity bucket)
.applyInPandas(score_frame) -> partitioned Parquet.
"""

from seqguard.spark.job import SparkUnavailable, get_session, read_events, score, score_path

__all__ = ["SparkUnavailable", "get_session", "read_events", "score", "score_path"]
