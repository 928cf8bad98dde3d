//! The `definitions` table: pipeline definitions (execution mode and approval actions) read
//! from AWS, kept per version so a restart reads a pipeline again only when its version changed.

use std::sync::Arc;

use jiff::Timestamp;
use rusqlite::params;

use approval_watch_core::model::{ExecutionMode, PipelineDefinition, Target};

use super::{Store, StoreError};

impl Store {
    /// Keeps definitions read from AWS, replacing older versions of the same pipelines.
    pub fn save_definitions(
        &mut self,
        fetched: &[(Target, i32, Arc<PipelineDefinition>)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if fetched.is_empty() {
            return Ok(());
        }
        let sql = StoreError::sqlite(&self.path);
        let tx = self.conn.transaction().map_err(sql)?;
        for (t, version, definitions) in fetched {
            // Serializing plain strings and numbers cannot fail; skip rather than guess.
            let Ok(json) = serde_json::to_string(&definitions.approvals) else {
                continue;
            };
            tx.execute(
                "DELETE FROM definitions WHERE account = ?1 AND region = ?2 AND pipeline = ?3",
                params![t.account, t.region, t.pipeline],
            )
            .map_err(sql)?;
            tx.execute(
                "INSERT INTO definitions
                     (account, region, pipeline, version, approvals, read_ms, execution_mode)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.account,
                    t.region,
                    t.pipeline,
                    version,
                    json,
                    now.as_millisecond(),
                    definitions.mode.as_str()
                ],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// The definitions kept; a row that cannot be read, or kept before execution modes were
    /// (its mode unknown), is left out (read again from AWS).
    pub fn load_definitions(&self) -> Result<Vec<(Target, i32, PipelineDefinition)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT account, region, pipeline, version, approvals, execution_mode
                 FROM definitions WHERE execution_mode IS NOT NULL",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    target_of(row)?,
                    row.get::<_, i32>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (target, version, json, mode) = row.map_err(|e| self.sql(e))?;
            match serde_json::from_str(&json) {
                Ok(approvals) => out.push((
                    target,
                    version,
                    PipelineDefinition {
                        mode: ExecutionMode::parse(Some(&mode)),
                        approvals,
                    },
                )),
                Err(e) => tracing::warn!(
                    pipeline = %target.pipeline,
                    "cached definition is corrupt ({e}); reading it from AWS when needed"
                ),
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Pipelines whose kept definition has an execution mode this version does not know, with
    /// that mode: they cannot be watched (`status`, `check-config`).
    pub fn unknown_execution_modes(&self) -> Result<Vec<(Target, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT account, region, pipeline, execution_mode FROM definitions
                 WHERE execution_mode NOT IN ('SUPERSEDED', 'QUEUED', 'PARALLEL')
                 ORDER BY account, region, pipeline",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| Ok((target_of(row)?, row.get::<_, String>(3)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }
}

/// The pipeline a row names in its first three columns (account, region, pipeline).
fn target_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Target> {
    Ok(Target {
        account: row.get(0)?,
        region: row.get(1)?,
        pipeline: row.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use approval_watch_core::model::ApprovalDefinition;

    use super::*;
    use crate::store::testing::{now, temp_db};

    fn target(pipeline: &str) -> Target {
        Target {
            account: "default".into(),
            region: "us-east-1".into(),
            pipeline: pipeline.into(),
        }
    }

    fn definitions(custom_data: &str) -> Arc<PipelineDefinition> {
        Arc::new(PipelineDefinition {
            mode: ExecutionMode::Superseded,
            approvals: vec![(
                ("Approve".into(), "Approve".into()),
                ApprovalDefinition {
                    custom_data: Some(custom_data.into()),
                    external_entity_link: None,
                    timeout_minutes: Some(60),
                },
            )],
        })
    }

    /// A store at `path` that kept web-app's version 1 and payments' version 4.
    fn store_with_two(path: &std::path::Path) -> Store {
        let mut store = Store::open(path).unwrap();
        store
            .save_definitions(
                &[
                    (target("web-app"), 1, definitions("v1")),
                    (target("payments"), 4, definitions("p4")),
                ],
                now(),
            )
            .unwrap();
        store
    }

    #[test]
    fn only_the_newest_version_per_pipeline_is_kept_across_a_reopen() {
        let (_dir, path) = temp_db("s.db");
        let mut store = store_with_two(&path);
        store
            .save_definitions(&[(target("web-app"), 2, definitions("v2"))], now())
            .unwrap();
        store.close().unwrap();

        let store = Store::open(&path).unwrap();
        let mut loaded = store.load_definitions().unwrap();
        loaded.sort_by(|a, b| a.0.pipeline.cmp(&b.0.pipeline));
        assert_eq!(
            loaded,
            [
                (target("payments"), 4, (*definitions("p4")).clone()),
                (target("web-app"), 2, (*definitions("v2")).clone()),
            ]
        );
    }

    #[test]
    fn a_corrupt_definition_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_two(&dir.path().join("s.db"));
        store
            .conn
            .execute(
                "UPDATE definitions SET approvals = '{not json' WHERE pipeline = 'web-app'",
                [],
            )
            .unwrap();
        let loaded = store.load_definitions().unwrap();
        assert_eq!(
            loaded,
            [(target("payments"), 4, (*definitions("p4")).clone())]
        );
    }

    #[test]
    fn the_execution_mode_is_kept_and_a_row_from_before_modes_is_read_again() {
        let (_dir, path) = temp_db("s.db");
        let mut store = store_with_two(&path);
        let parallel = Arc::new(PipelineDefinition {
            mode: ExecutionMode::Parallel,
            ..(*definitions("v2")).clone()
        });
        store
            .save_definitions(&[(target("web-app"), 2, parallel.clone())], now())
            .unwrap();
        // A row kept by a build before execution modes: no mode, so not trusted.
        store
            .conn
            .execute(
                "UPDATE definitions SET execution_mode = NULL WHERE pipeline = 'payments'",
                [],
            )
            .unwrap();
        store.close().unwrap();
        let mut store = Store::open(&path).unwrap();
        assert_eq!(
            store.load_definitions().unwrap(),
            [(target("web-app"), 2, (*parallel).clone())]
        );
        assert!(store.unknown_execution_modes().unwrap().is_empty());
        // A mode this version does not know is kept too, and listed.
        let unknown = Arc::new(PipelineDefinition {
            mode: ExecutionMode::Unknown("STAGGERED".into()),
            ..(*definitions("v3")).clone()
        });
        store
            .save_definitions(&[(target("web-app"), 3, unknown)], now())
            .unwrap();
        assert_eq!(
            store.unknown_execution_modes().unwrap(),
            [(target("web-app"), "STAGGERED".to_owned())]
        );
    }
}
