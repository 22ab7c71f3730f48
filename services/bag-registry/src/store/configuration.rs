//! The product lines and areas from configuration, written at start-up.

use sqlx::PgPool;
use tracetrack_domain::qr::ProductLine;

/// Writes product lines and areas, refusing (SPEC §1) a line whose parent pattern an existing
/// child matches, and dropping a line or area that bags still use. Serialised across replicas.
pub async fn sync_configuration(
    pool: &PgPool,
    lines: &[ProductLine],
    areas: &[String],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tracetrack.registry.configuration'))")
        .execute(&mut *tx)
        .await?;
    for area in areas {
        sqlx::query("INSERT INTO registry.areas (name) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(area)
            .execute(&mut *tx)
            .await?;
    }
    let dropped: Vec<String> =
        sqlx::query_scalar("SELECT name FROM registry.areas WHERE name <> ALL($1)")
            .bind(areas)
            .fetch_all(&mut *tx)
            .await?;
    for area in dropped {
        let used: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM registry.bags WHERE area = $1)")
                .bind(&area)
                .fetch_one(&mut *tx)
                .await?;
        if used {
            anyhow::bail!("refusing to start: area {area:?} was removed from the configuration but bags still use it");
        }
        sqlx::query("DELETE FROM registry.areas WHERE name = $1")
            .bind(&area)
            .execute(&mut *tx)
            .await?;
    }
    for line in lines {
        let clash: Option<String> = sqlx::query_scalar(
            "SELECT qr FROM registry.bags WHERE kind = 'child' AND qr ~ $1 LIMIT 1",
        )
        .bind(line.parent_pattern.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(child) = clash {
            anyhow::bail!(
                "refusing to start: product line {:?} has parent pattern {:?}, which the existing child {child:?} matches",
                line.name,
                line.parent_pattern.as_str()
            );
        }
        sqlx::query(
            r#"INSERT INTO registry.product_lines AS l (name, parent_pattern, capacity, parent_weight_kg, child_weight_kg)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (name) DO UPDATE SET parent_pattern = EXCLUDED.parent_pattern, capacity = EXCLUDED.capacity,
                 parent_weight_kg = EXCLUDED.parent_weight_kg, child_weight_kg = EXCLUDED.child_weight_kg, updated_at = now()
               WHERE (l.parent_pattern, l.capacity, l.parent_weight_kg, l.child_weight_kg)
                     IS DISTINCT FROM (EXCLUDED.parent_pattern, EXCLUDED.capacity, EXCLUDED.parent_weight_kg, EXCLUDED.child_weight_kg)"#,
        )
        .bind(&line.name)
        .bind(line.parent_pattern.as_str())
        .bind(line.capacity)
        .bind(line.parent_weight_kg)
        .bind(line.child_weight_kg)
        .execute(&mut *tx)
        .await?;
    }
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    let dropped: Vec<String> =
        sqlx::query_scalar("SELECT name FROM registry.product_lines WHERE name <> ALL($1)")
            .bind(&names)
            .fetch_all(&mut *tx)
            .await?;
    for line in dropped {
        let used: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM registry.bags WHERE product_line = $1)",
        )
        .bind(&line)
        .fetch_one(&mut *tx)
        .await?;
        if used {
            anyhow::bail!("refusing to start: product line {line:?} was removed from the configuration but bags still use it");
        }
        sqlx::query("DELETE FROM registry.product_lines WHERE name = $1")
            .bind(&line)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
