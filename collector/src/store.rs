//! The small embedded store a bot keeps state in (counter samples, NetFlow templates): one redb
//! file in the data directory, crash-safe, opened once per process.

use std::path::Path;
use std::sync::Arc;

/// A handle to the bot's redb database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<redb::Database>,
}

impl Store {
    /// Opens (or creates) `<data_dir>/<name>.redb`, creating the directory if needed.
    pub fn open(data_dir: &Path, name: &str) -> Result<Store, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
        let path = data_dir.join(format!("{name}.redb"));
        let db = redb::Database::create(&path)
            .map_err(|e| format!("cannot open store {}: {e}", path.display()))?;
        Ok(Store { db: Arc::new(db) })
    }

    /// The database itself: bots define their own tables.
    pub fn database(&self) -> &redb::Database {
        &self.db
    }
}
