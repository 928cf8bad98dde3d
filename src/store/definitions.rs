//! The `definitions` table: pipeline definitions (their approval actions) read from AWS, kept
//! per version so a restart reads a pipeline again only when its version changed.

use std::sync::Arc;

use jiff::Timestamp;
use rusqlite::params;

use approval_watch_core::model::{Definitions, Target};

use super::{Store, StoreError};

impl Store {
    /// Keeps definitions read from AWS, replacing older versions of the same pipelines.
    pub fn save_definitions(
        &mut self,
        fetched: &[(Target, i32, Arc<Definitions>)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if fetched.is_empty() {
            return Ok(());
        }
        let sql = StoreError::sqlite(&self.path);
        let tx = self.conn.transaction().map_err(sql)?;
        for (t, version, definitions) in fetched {
            // Serializing plain strings and numbers cannot fail; skip rather than guess.
            let Ok(json) = serde_json::to_string(definitions.as_ref()) else {
                continue;
            };
            tx.execute(
                "DELETE FROM definitions WHERE account = ?1 AND region = ?2 AND pipeline = ?3",
                params![t.account, t.region, t.pipeline],
            )
            .map_err(sql)?;
            tx.execute(
                "INSERT INTO definitions (account, region, pipeline, version, approvals, read_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    t.account,
                    t.region,
                    t.pipeline,
                    version,
                    json,
                    now.as_millisecond()
                ],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// The definitions kept; a row that cannot be read is left out (read again from AWS).
    pub fn load_definitions(&self) -> Result<Vec<(Target, i32, Definitions)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT account, region, pipeline, version, approvals FROM definitions")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    Target {
                        account: row.get(0)?,
                        region: row.get(1)?,
                        pipeline: row.get(2)?,
                    },
                    row.get::<_, i32>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (target, version, json) = row.map_err(|e| self.sql(e))?;
            match serde_json::from_str(&json) {
                Ok(definitions) => out.push((target, version, definitions)),
                Err(e) => tracing::warn!(
                    pipeline = %target.pipeline,
                    "cached definition is corrupt ({e}); reading it from AWS when needed"
                ),
            }
        }
        Ok(out)
    }
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

    fn definitions(custom_data: &str) -> Arc<Definitions> {
        Arc::new(vec![(
            ("Approve".into(), "Approve".into()),
            ApprovalDefinition {
                custom_data: Some(custom_data.into()),
                external_entity_link: None,
                timeout_minutes: Some(60),
            },
        )])
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
}
