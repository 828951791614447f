//! Files users store on the appliance through the MAAS API ([`StoredFile`]): each user's own
//! namespace of filenames, and a random key per file for reads without credentials.

use redb::TableDefinition;

use super::{Principal, Service, ServiceError};
use crate::model::file::{DamagedFile, StoredFile};
use crate::model::ids::{self, now_ms};
use crate::store::tables;

/// `owner/filename` -> StoredFile (JSON). Created by the first upload; reads of a store that has
/// none yet see no files, so no schema migration is needed.
pub const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("maas_files");

impl From<DamagedFile> for ServiceError {
    fn from(e: DamagedFile) -> Self {
        ServiceError::Invalid(e.to_string())
    }
}

fn file_key(owner: &str, filename: &str) -> String {
    format!("{owner}/{filename}")
}

fn check_filename(name: &str) -> Result<(), ServiceError> {
    if name.is_empty() || name.len() > 255 || name.contains('/') || name.contains('\0') {
        return Err(ServiceError::Invalid(format!(
            "filename {name:?} must be 1-255 characters without '/'"
        )));
    }
    Ok(())
}

impl Service {
    /// Stores (or replaces) one of the caller's files.
    pub async fn put_file(
        &self,
        p: &Principal,
        filename: &str,
        content: &[u8],
    ) -> Result<StoredFile, ServiceError> {
        check_filename(filename)?;
        let file = StoredFile::new(
            p.username.clone(),
            filename.to_string(),
            ids::random_token(30),
            content,
            now_ms(),
        );
        let f = file.clone();
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                tables::put_in(tx, FILES, &file_key(&f.owner, &f.filename), &f)?;
                Ok(())
            })
            .await?;
        tracing::info!(filename, owner = %p.username, bytes = content.len(), "file stored");
        Ok(file)
    }

    /// The caller's files whose names start with `prefix`, by name.
    pub fn list_files(
        &self,
        p: &Principal,
        prefix: Option<&str>,
    ) -> Result<Vec<StoredFile>, ServiceError> {
        let rx = self.store.read()?;
        let all: Vec<StoredFile> = tables::all(&rx, FILES)?;
        Ok(all
            .into_iter()
            .filter(|f| f.owner == p.username)
            .filter(|f| prefix.is_none_or(|x| f.filename.starts_with(x)))
            .collect())
    }

    /// One of the caller's files.
    pub fn file(&self, p: &Principal, filename: &str) -> Result<StoredFile, ServiceError> {
        let rx = self.store.read()?;
        tables::get(&rx, FILES, &file_key(&p.username, filename))?
            .ok_or_else(|| ServiceError::not_found("file", filename))
    }

    /// A file by its anonymous-access key.
    pub fn file_by_key(&self, key: &str) -> Result<StoredFile, ServiceError> {
        let rx = self.store.read()?;
        let all: Vec<StoredFile> = tables::all(&rx, FILES)?;
        all.into_iter()
            .find(|f| !key.is_empty() && f.key == key)
            .ok_or_else(|| ServiceError::not_found("file with key", key))
    }

    /// Deletes one of the caller's files.
    pub async fn delete_file(&self, p: &Principal, filename: &str) -> Result<(), ServiceError> {
        let key = file_key(&p.username, filename);
        let name = filename.to_string();
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                if !tables::remove_in(tx, FILES, &key)? {
                    return Err(ServiceError::not_found("file", &name));
                }
                Ok(())
            })
            .await
    }
}
