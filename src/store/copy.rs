//! The dry run's store: a private in-memory copy of the state database, so `once --dry-run`
//! runs a real cycle and the file is never written.

use std::path::Path;

use rusqlite::Connection;

use super::{Store, StoreError, connect_read_only, migrate};

impl Store {
    /// A private in-memory copy of the database at `path` (empty when there is none yet),
    /// migrated to this build's schema: `once --dry-run` runs a real cycle on it, so it
    /// decides exactly as `once` would, and the file is never written.
    pub fn open_copy(path: &Path) -> Result<Self, StoreError> {
        let sql = StoreError::sqlite(path);
        let mut conn = Connection::open_in_memory().map_err(sql)?;
        if let Some((file, _)) = connect_read_only(path)? {
            let backup = rusqlite::backup::Backup::new(&file, &mut conn).map_err(sql)?;
            backup
                .run_to_completion(1024, std::time::Duration::from_millis(5), None)
                .map_err(sql)?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        migrate(&mut conn, path)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            _lock: None,
            opened: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::store::testing::{key, store_with_alerts, temp_db};

    #[test]
    fn the_copy_sees_the_file_and_writes_only_to_itself() {
        let (dir, path) = temp_db("s.db");
        store_with_alerts(dir.path(), &["t1"], "").close().unwrap();
        let before = std::fs::read(&path).unwrap();

        let copy = Store::open_copy(&path).unwrap();
        assert!(copy.known([&key("t1")]).unwrap().contains(&key("t1")));
        let queued = copy.pending(10).unwrap();
        assert_eq!(queued.len(), 1);
        copy.mark_dropped(queued[0].id, "dry run").unwrap();
        assert_eq!(copy.count_pending().unwrap(), 0);
        copy.close().unwrap();

        assert_eq!(std::fs::read(&path).unwrap(), before);
        let file = Store::open_read_only(&path).unwrap().unwrap();
        assert_eq!(file.count_pending().unwrap(), 1);
    }

    #[test]
    fn a_missing_file_gives_an_empty_copy_and_creates_nothing() {
        let (_dir, path) = temp_db("none.db");
        let copy = Store::open_copy(&path).unwrap();
        assert!(copy.open_approvals().unwrap().is_empty());
        assert!(!path.exists());
    }
}
