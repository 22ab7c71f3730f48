// After migrating, the scan log's monthly partitions.
tracetrack_common::service_main!(
    tracetrack_scan,
    "scan",
    tracetrack_scan::state::SCHEMA,
    |pool| async move {
        let created = tracetrack_scan::store::ensure_partitions(&pool, chrono::Utc::now()).await?;
        tracing::info!(partitions_created = created, "scan partitions");
        Ok(())
    }
);
