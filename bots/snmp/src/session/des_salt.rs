//! The persisted DES/3DES salt state of SNMPv3 privacy.

use async_snmp::{DesSaltState, PersistedDesSaltState};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const DES_SALT_TABLE: TableDefinition<&str, u32> = TableDefinition::new("snmp_des_salt_state");
const DES_SALT_KEY: &str = "engine_boots";

/// The DES/3DES salt state of this bot, persisted so that a restart never reuses a salt
/// (async-snmp requires it for DES privacy). Each start advances the stored epoch.
pub fn des_salt_state(database: &redb::Database) -> Result<DesSaltState, String> {
    let previous = {
        let read = database
            .begin_read()
            .map_err(|e| format!("reading the DES salt state: {e}"))?;
        match read.open_table(DES_SALT_TABLE) {
            Ok(table) => table
                .get(DES_SALT_KEY)
                .map_err(|e| format!("reading the DES salt state: {e}"))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(format!("reading the DES salt state: {e}")),
        }
    };
    let persist = |expected: Option<u32>| {
        move |state: &PersistedDesSaltState| -> Result<(), String> {
            let write = database.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = write
                    .open_table(DES_SALT_TABLE)
                    .map_err(|e| e.to_string())?;
                let current = table
                    .get(DES_SALT_KEY)
                    .map_err(|e| e.to_string())?
                    .map(|v| v.value());
                if current != expected {
                    return Err("another process advanced the DES salt state".to_string());
                }
                table
                    .insert(DES_SALT_KEY, state.engine_boots())
                    .map_err(|e| e.to_string())?;
            }
            write.commit().map_err(|e| e.to_string())
        }
    };
    let state = match previous {
        None => DesSaltState::install(persist(None)),
        Some(boots) => {
            let previous_state = PersistedDesSaltState::new(boots).map_err(|e| e.to_string())?;
            DesSaltState::restart(previous_state, persist(Some(boots)))
        }
    };
    state.map_err(|e| format!("DES salt state: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn des_salt_state_advances_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let database = redb::Database::create(dir.path().join("state.redb")).unwrap();
        let first = des_salt_state(&database).unwrap();
        let second = des_salt_state(&database).unwrap();
        assert!(second.engine_boots() > first.engine_boots());
    }
}
