//! Files users store on the appliance through the MAAS API (Juju keeps its agent tools and
//! bootstrap state there). Each user has their own namespace of filenames; a random key lets a
//! machine fetch one file without credentials (MAAS's anon_resource_uri).

use base64::Engine;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use super::{Principal, Service, ServiceError};
use crate::model::ids::{self, now_ms};
use crate::store::tables;

/// `owner/filename` -> StoredFile (JSON). Created by the first upload; reads of a store that has
/// none yet see no files, so no schema migration is needed.
pub const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("maas_files");

/// One stored file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    /// The user who uploaded it; filenames are unique per owner.
    pub owner: String,
    /// The name the owner gave it (MAAS's filename), unique among that owner's files.
    pub filename: String,
    /// Random key for anonymous reads of this one file.
    pub key: String,
    /// The content, base64 (JSON has no bytes; an array of numbers would be four times larger).
    content_b64: String,
    /// When it was uploaded, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl StoredFile {
    /// The file's bytes; Invalid when the stored base64 is damaged.
    pub fn content(&self) -> Result<Vec<u8>, ServiceError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.content_b64)
            .map_err(|e| {
                ServiceError::Invalid(format!("stored file {} is damaged: {e}", self.filename))
            })
    }

    /// The content as stored, base64 (the MAAS face answers with it as is).
    pub fn content_base64(&self) -> &str {
        &self.content_b64
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
        let file = StoredFile {
            owner: p.username.clone(),
            filename: filename.to_string(),
            key: ids::random_token(30),
            content_b64: base64::engine::general_purpose::STANDARD.encode(content),
            created_ms: now_ms(),
        };
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
