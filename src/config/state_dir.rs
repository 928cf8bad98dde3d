//! `state_path` checked against the file system (by `check-config`): its directory must
//! exist, or the first `once` or `run` fails where the config check passed.

use std::path::Path;

use super::{ConfigError, invalid};

/// Fails naming `state_path` unless the directory that will hold the database exists and is
/// a directory. The database itself may not exist yet.
pub fn check_state_directory(state_path: &Path) -> Result<(), ConfigError> {
    let dir = match state_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(invalid(
            "state_path",
            format!(
                "{} is not a directory; expected the directory to hold {}",
                dir.display(),
                state_path.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(invalid(
            "state_path",
            format!(
                "directory {} does not exist; create it (systemd: StateDirectory=) or point state_path elsewhere",
                dir.display()
            ),
        )),
        Err(e) => Err(invalid(
            "state_path",
            format!("cannot look at directory {}: {e}", dir.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_must_exist_and_be_one() {
        let dir = tempfile::tempdir().unwrap();
        check_state_directory(&dir.path().join("state.db")).unwrap();
        check_state_directory(Path::new("approval-watch.db")).unwrap();
        let e = check_state_directory(&dir.path().join("missing/state.db"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("state_path: directory "), "{e}");
        assert!(e.contains("does not exist"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = check_state_directory(&file.join("state.db"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("state_path: ") && e.contains("is not a directory"),
            "{e}"
        );
    }
}
