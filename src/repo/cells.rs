//! How a restore journal (`restores/`) or a key map (`keymaps/`) stores
//! names and keys: as they are in a plain repository; in an encrypted one
//! sealed deterministically (crypto::Keys::seal_deterministic), so rows
//! are still found by equality while the file reveals nothing but which
//! values repeat. Each column's name is the sealing's associated data, so
//! a value cannot be moved to another column unnoticed.

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::types::Value;

use super::crypto::Keys;
use crate::error::{Error, Result};

#[derive(Clone)]
pub(crate) struct Cells {
    keys: Option<Arc<Keys>>,
    /// The file, for errors.
    path: PathBuf,
}

impl Cells {
    pub(crate) fn new(keys: Option<Arc<Keys>>, path: PathBuf) -> Cells {
        Cells { keys, path }
    }

    pub(crate) fn sealed(&self) -> bool {
        self.keys.is_some()
    }

    pub(crate) fn text(&self, column: &str, v: &str) -> Value {
        match &self.keys {
            None => Value::Text(v.to_string()),
            Some(k) => Value::Blob(k.seal_deterministic(column.as_bytes(), v.as_bytes())),
        }
    }

    pub(crate) fn blob(&self, column: &str, v: &[u8]) -> Value {
        match &self.keys {
            None => Value::Blob(v.to_vec()),
            Some(k) => Value::Blob(k.seal_deterministic(column.as_bytes(), v)),
        }
    }

    fn failed(&self, column: &str) -> Error {
        Error::AuthFailed {
            file: self.path.display().to_string(),
            at: format!(" (a value of column `{column}`)"),
        }
    }

    pub(crate) fn get_blob(&self, column: &str, v: Value) -> Result<Vec<u8>> {
        match (&self.keys, v) {
            (None, Value::Blob(b)) => Ok(b),
            (None, Value::Text(t)) => Ok(t.into_bytes()),
            (Some(k), Value::Blob(b)) => k
                .open(column.as_bytes(), &b)
                .map_err(|_| self.failed(column)),
            _ => Err(self.failed(column)),
        }
    }

    pub(crate) fn get_text(&self, column: &str, v: Value) -> Result<String> {
        String::from_utf8(self.get_blob(column, v)?).map_err(|_| self.failed(column))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::MasterKey;

    #[test]
    fn sealed_cells_are_deterministic_per_column_and_open_back() {
        let keys = Arc::new(Keys::new(MasterKey::from_bytes([5; 32])));
        let c = Cells::new(Some(keys), PathBuf::from("j.db"));
        assert_eq!(c.text("ns", "shop"), c.text("ns", "shop"));
        assert_ne!(c.text("ns", "shop"), c.text("kind", "shop"));
        assert_ne!(c.text("ns", "shop"), c.text("ns", "shoq"));
        let v = c.text("kind", "Order");
        assert_eq!(c.get_text("kind", v.clone()).unwrap(), "Order");
        // Moved to another column: refused.
        assert!(c.get_text("ns", v.clone()).is_err());
        let Value::Blob(mut b) = v else {
            panic!("sealed cells are blobs")
        };
        b[30] ^= 1;
        assert!(matches!(
            c.get_text("kind", Value::Blob(b)),
            Err(Error::AuthFailed { .. })
        ));
        let plain = Cells::new(None, PathBuf::from("j.db"));
        assert_eq!(plain.text("ns", "shop"), Value::Text("shop".into()));
    }
}
