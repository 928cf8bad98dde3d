//! The state file watched: deleted (`rm state.db*`) or replaced under a running daemon, it
//! would be written on unseen and lost at the next restart, which would then announce every
//! waiting approval again. Each cycle compares what the paths name with the files opened;
//! on a difference the database is copied out of the still-open connection (`VACUUM INTO`,
//! which reads through the connection and so sees the unlinked file and its WAL) and renamed
//! into place, then reopened there.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{Store, StoreError, connect, take_lock};

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    fn at(path: &Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|m| Self::of(&m))
    }
}

/// What the store opened: the database and, when they existed then, its WAL and shared-memory
/// files, and the lock file held.
#[derive(Debug)]
pub(super) struct Opened {
    files: Vec<(PathBuf, FileId)>,
    lock: Option<FileId>,
}

impl Opened {
    /// Notes what `path` and its companions name right after opening.
    pub(super) fn now(path: &Path, lock: &File) -> Self {
        let files = [
            path.to_owned(),
            sibling(path, "-wal"),
            sibling(path, "-shm"),
        ]
        .into_iter()
        .filter_map(|p| FileId::at(&p).map(|id| (p, id)))
        .collect();
        Self {
            files,
            lock: lock.metadata().ok().map(|m| FileId::of(&m)),
        }
    }

    /// The files whose path no longer names the file opened, with what happened to each.
    fn moved(&self) -> Vec<String> {
        self.files
            .iter()
            .filter_map(|(path, id)| {
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                match std::fs::metadata(path) {
                    Ok(meta) if FileId::of(&meta) == *id => None,
                    Ok(_) => Some(format!("{name} replaced by another file")),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Some(format!("{name} deleted"))
                    }
                    // Unreadable for another reason (permissions changed): not evidence of a
                    // deletion, and nothing a copy could fix.
                    Err(_) => None,
                }
            })
            .collect()
    }

    fn lock_moved(&self, lock_path: &Path) -> bool {
        self.lock
            .is_some_and(|id| FileId::at(lock_path) != Some(id))
    }
}

/// `state.db` + `-wal` → `state.db-wal`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl Store {
    /// Checks that the database's path still names the files opened; if not, logs an error
    /// and puts the database back at its path from the open connection, then goes on with
    /// the file there. Returns whether it had to. An error means the database could not be
    /// put back: the caller stops rather than write where nobody will find it.
    pub fn keep_in_place(&mut self) -> Result<bool, StoreError> {
        let Some(opened) = &self.opened else {
            return Ok(false);
        };
        let lock_path = sibling(&self.path, ".lock");
        let moved = opened.moved();
        let lock_moved = opened.lock_moved(&lock_path);
        if moved.is_empty() && !lock_moved {
            return Ok(false);
        }
        let path = self.path.clone();
        let restore_error = |cause: String| StoreError::Restore {
            path: path.clone(),
            cause,
        };
        if lock_moved {
            // Without its lock file a second daemon could open the same database.
            tracing::error!(
                state = %self.path.display(),
                lock = %lock_path.display(),
                "the state database's lock file was deleted or replaced while open; taking it again"
            );
            let lock = take_lock(&self.path).map_err(|e| restore_error(e.to_string()))?;
            self._lock = Some(lock);
        }
        if !moved.is_empty() {
            tracing::error!(
                state = %self.path.display(),
                "the state database was deleted or replaced while open ({}); putting it back from the open connection",
                moved.join(", ")
            );
            self.put_back().map_err(restore_error)?;
            tracing::warn!(
                state = %self.path.display(),
                "state database put back in place; nothing recorded was lost"
            );
        }
        if let Some(lock) = &self._lock {
            self.opened = Some(Opened::now(&self.path, lock));
        }
        Ok(true)
    }

    /// Copies the database out of the open connection into a file beside it, renames that
    /// into place and reopens the connection there.
    fn put_back(&mut self) -> Result<(), String> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state.db".to_owned());
        let copy = dir.join(format!(".{name}.restoring-{}", std::process::id()));
        let _ = std::fs::remove_file(&copy);
        let copy_text = copy
            .to_str()
            .ok_or_else(|| format!("{} is not valid UTF-8", copy.display()))?;
        self.conn
            .execute("VACUUM INTO ?1", [copy_text])
            .map_err(|e| format!("cannot copy the open database to {}: {e}", copy.display()))?;
        sync(&copy).map_err(|e| format!("cannot flush {}: {e}", copy.display()))?;

        // Close the old connection before anything appears at the path: closing may
        // checkpoint and delete `-wal`/`-shm` by name, which must not hit the new file's.
        let old = std::mem::replace(
            &mut self.conn,
            Connection::open_in_memory().map_err(|e| e.to_string())?,
        );
        if let Err((_, e)) = old.close() {
            tracing::warn!(state = %self.path.display(), "closing the old connection: {e}");
        }
        // A file someone put at the path is kept aside, not overwritten.
        if std::fs::symlink_metadata(&self.path).is_ok() {
            let aside = dir.join(format!(
                "{name}.replaced-{}",
                jiff::Timestamp::now().as_second()
            ));
            std::fs::rename(&self.path, &aside).map_err(|e| {
                format!(
                    "cannot move the file now at {} aside: {e}",
                    self.path.display()
                )
            })?;
            tracing::warn!(
                state = %self.path.display(),
                moved_to = %aside.display(),
                "the file found at the state path was moved aside"
            );
        }
        // A WAL left at the path would be replayed into the copy: it belongs to another file.
        for suffix in ["-wal", "-shm"] {
            let leftover = sibling(&self.path, suffix);
            match std::fs::remove_file(&leftover) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove {}: {e}", leftover.display())),
            }
        }
        std::fs::rename(&copy, &self.path).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                copy.display(),
                self.path.display()
            )
        })?;
        sync(&dir).map_err(|e| format!("cannot flush {}: {e}", dir.display()))?;
        self.conn = connect(&self.path).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn sync(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Changes;
    use crate::store::testing::temp_db;

    fn count(store: &Store) -> i64 {
        store
            .conn
            .query_row("SELECT COUNT(*) FROM probe", [], |r| r.get(0))
            .unwrap()
    }

    fn store_with_rows(path: &Path) -> Store {
        let mut store = Store::open(path).unwrap();
        store
            .record(&Changes::default(), jiff::Timestamp::now())
            .unwrap();
        store
            .conn
            .execute_batch("CREATE TABLE probe (x); INSERT INTO probe VALUES (1), (2);")
            .unwrap();
        store
    }

    #[test]
    fn an_untouched_database_is_left_alone() {
        let (_dir, path) = temp_db("state.db");
        let mut store = store_with_rows(&path);
        let before = FileId::at(&path);
        assert!(!store.keep_in_place().unwrap());
        assert_eq!(FileId::at(&path), before);
    }

    #[test]
    fn a_deleted_database_is_put_back_with_everything_and_written_on() {
        let (_dir, path) = temp_db("state.db");
        let mut store = store_with_rows(&path);
        for suffix in ["", "-wal", "-shm"] {
            std::fs::remove_file(sibling(&path, suffix)).unwrap();
        }
        assert!(store.keep_in_place().unwrap());
        assert!(path.exists());
        assert_eq!(count(&store), 2);
        store
            .conn
            .execute("INSERT INTO probe VALUES (3)", [])
            .unwrap();
        assert!(!store.keep_in_place().unwrap(), "settled after one restore");
        store.close().unwrap();
        let reopened = Store::open(&path).unwrap();
        assert_eq!(count(&reopened), 3);
    }

    #[test]
    fn a_replaced_database_is_put_back_and_the_stranger_kept_aside() {
        let (dir, path) = temp_db("state.db");
        let mut store = store_with_rows(&path);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "not ours").unwrap();
        assert!(store.keep_in_place().unwrap());
        assert_eq!(count(&store), 2);
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("state.db.replaced-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&aside[0])).unwrap(),
            "not ours"
        );
    }

    #[test]
    fn a_deleted_lock_file_is_taken_again() {
        let (_dir, path) = temp_db("state.db");
        let mut store = store_with_rows(&path);
        std::fs::remove_file(sibling(&path, ".lock")).unwrap();
        assert!(store.keep_in_place().unwrap());
        let e = Store::open(&path).err().expect("the lock is held again");
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    }
}
