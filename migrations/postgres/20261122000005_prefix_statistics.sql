-- Upload filters compare a 256-character prefix (which the index holds) and the whole value;
-- the two always agree, but the planner multiplies their selectivities, estimates one row per
-- user, and at scale prefers a bitmap scan of all of a user's records plus a sort to an index
-- scan of one page. Telling it the columns depend on each other fixes the estimate.

CREATE STATISTICS uploads_source_context_stats (dependencies)
    ON (left(source_context, 256)), source_context FROM uploads;
CREATE STATISTICS uploads_source_type_stats (dependencies)
    ON (left(source_type, 256)), source_type FROM uploads;
CREATE STATISTICS uploads_procedure_task_stats (dependencies)
    ON (left(procedure_task_id, 256)), procedure_task_id FROM uploads;
CREATE STATISTICS uploads_storage_region_stats (dependencies)
    ON (left(storage_region, 256)), storage_region FROM uploads;

ANALYZE uploads;
