//! The lock file beside the database (`state.db.lock`): held for the life of a writing store,
//! so two daemons never share one database. Readers take no lock.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Takes the lock of the database at `path`, or says who holds it.
pub(super) fn take_lock(path: &Path) -> Result<File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|cause| StoreError::Lock {
            path: path.to_owned(),
            lock: lock_path.clone(),
            cause,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_owned(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(cause)) => Err(StoreError::Lock {
            path: path.to_owned(),
            lock: lock_path,
            cause,
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::temp_db;
    use crate::store::{Store, StoreError};

    #[test]
    fn a_second_writer_is_refused() {
        let (_dir, path) = temp_db("s.db");
        let _first = Store::open(&path).unwrap();
        let e = Store::open(&path).err().unwrap();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("in use by another approval-watch"));
        // Readers are welcome.
        assert!(Store::open_read_only(&path).unwrap().is_some());
    }
}
