//! One migrator from the bus's migrations, the service's and its building blocks' (each a
//! distinct version range), so one `_sqlx_migrations` table records them all.

use sqlx::migrate::{Migration, Migrator};

/// Two migrators claim the same version.
#[derive(Debug, thiserror::Error)]
#[error("migration version {version} appears twice ({first:?} and {second:?})")]
pub struct DuplicateMigration {
    pub version: i64,
    pub first: String,
    pub second: String,
}

/// The bus's migrations and every one of `migrators`, in version order. Missing migrations
/// are ignored (another building block's rows in `_sqlx_migrations` are not an error).
pub fn merged(migrators: &[&Migrator]) -> Result<Migrator, DuplicateMigration> {
    let mut all: Vec<Migration> = orderbus_bus::MIGRATOR.iter().cloned().collect();
    for m in migrators {
        all.extend(m.iter().cloned());
    }
    all.sort_by_key(|m| m.version);
    for pair in all.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(DuplicateMigration {
                version: pair[0].version,
                first: pair[0].description.to_string(),
                second: pair[1].description.to_string(),
            });
        }
    }
    let mut migrator = Migrator::with_migrations(all);
    migrator.set_ignore_missing(true);
    Ok(migrator)
}

#[cfg(test)]
mod tests {
    use super::*;

    static BLOCK: Migrator = sqlx::migrate!("tests/migrations_block");
    static SERVICE: Migrator = sqlx::migrate!("tests/migrations");

    #[test]
    fn merges_in_version_order_and_refuses_duplicates() {
        let m = merged(&[&BLOCK, &SERVICE]).unwrap();
        let versions: Vec<i64> = m.iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        assert_eq!(versions, sorted);
        assert!(versions.contains(&1));
        assert!(versions.contains(&910000000001));
        assert!(versions
            .iter()
            .any(|v| (900000000000..=900000000999).contains(v)));
        assert!(merged(&[&BLOCK, &BLOCK]).is_err());
    }
}
