//! The small embedded store a bot keeps state in (counter samples, NetFlow templates): one redb
//! file in the data directory, crash-safe, opened once per process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// redb's page cache. Its default (1 GiB) lets the cache grow to the whole file: with the
/// counter samples of 200 SNMP devices that was tens of MB of resident memory for data read once
/// a minute, which the kernel's page cache keeps just as well outside the process.
const CACHE_BYTES: usize = 8 << 20;

/// A handle to the bot's redb database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<redb::Database>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) `<data_dir>/<name>.redb`, creating the directory if needed. A file that
    /// is not a readable store is set aside (renamed `<name>.redb.corrupt-<unix time>`) with an
    /// ERROR saying what was lost, and a fresh store is started: a restart loop of a container
    /// helps nobody. The errors name the directory and `DATA_DIR`.
    pub fn open(data_dir: &Path, name: &str) -> Result<Store, String> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            format!(
                "DATA_DIR {}: cannot create the directory: {e}",
                data_dir.display()
            )
        })?;
        let path = data_dir.join(format!("{name}.redb"));
        let db = match create(&path) {
            Ok(db) => db,
            Err(e) if is_unreadable(&e) => {
                let aside = set_aside(&path)?;
                tracing::error!(
                    "the store {} is unreadable ({e}); it was moved to {} and an empty store \
                     started: the counter samples, NetFlow templates and undelivered values it \
                     held are lost",
                    path.display(),
                    aside.display()
                );
                create(&path).map_err(|e| format!("cannot open store {}: {e}", path.display()))?
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(format!(
                    "DATA_DIR {}: {} is in use by another process (is another bot running with \
                     the same DATA_DIR? give each bot its own)",
                    data_dir.display(),
                    path.display()
                ))
            }
            Err(e) => return Err(format!("cannot open store {}: {e}", path.display())),
        };
        Ok(Store { db: Arc::new(db) })
    }

    /// The database itself: bots define their own tables.
    pub fn database(&self) -> &redb::Database {
        &self.db
    }
}

fn create(path: &Path) -> Result<redb::Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
}

/// Whether opening failed because the file's contents are not a store this redb can read.
fn is_unreadable(error: &redb::DatabaseError) -> bool {
    match error {
        redb::DatabaseError::UpgradeRequired(_) => true,
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(e)) => {
            matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            )
        }
        _ => false,
    }
}

/// Renames an unreadable store file out of the way and returns its new path.
fn set_aside(path: &Path) -> Result<PathBuf, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{now}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|e| {
        format!(
            "the store {} is unreadable and cannot be moved aside: {e}",
            path.display()
        )
    })?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbage_file_is_set_aside_and_a_fresh_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let store = Store::open(dir.path(), "state").unwrap();
        drop(store);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "state.redb"), "{names:?}");
        let aside = names
            .iter()
            .find(|n| n.starts_with("state.redb.corrupt-"))
            .unwrap_or_else(|| panic!("no file set aside: {names:?}"));
        assert_eq!(
            std::fs::read(dir.path().join(aside)).unwrap(),
            vec![0x5a; 8192]
        );
    }

    #[test]
    fn a_store_in_use_names_the_directory_and_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), "state").unwrap();
        let Err(problem) = Store::open(dir.path(), "state") else {
            panic!("a second open of the same store succeeded");
        };
        assert!(problem.contains("DATA_DIR"), "{problem}");
        assert!(
            problem.contains(&dir.path().display().to_string()),
            "{problem}"
        );
    }
}
